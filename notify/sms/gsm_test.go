package sms

import (
	"strings"
	"testing"
)

func TestSegments(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		want        int
		wantUnicode bool
	}{
		{"empty", "", 0, false},
		{"short ascii", "UPS 123456789012 on battery", 1, false},
		{"160 gsm", strings.Repeat("a", 160), 1, false},
		{"161 gsm", strings.Repeat("a", 161), 2, false},
		{"306 gsm", strings.Repeat("a", 306), 2, false},
		{"307 gsm", strings.Repeat("a", 307), 3, false},
		{"gsm accented letters are single septets", strings.Repeat("é", 160), 1, false},
		{"80 extension chars fill one segment", strings.Repeat("€", 80), 1, false},
		{"81 extension chars", strings.Repeat("{", 81), 2, false},
		// 159 septets + an escape pair = 161: two parts; the pair may not
		// straddle the 153-septet boundary.
		{"extension at boundary", strings.Repeat("a", 152) + "[" + strings.Repeat("a", 7), 2, false},
		{"escape pair not split", strings.Repeat("a", 152) + "]" + strings.Repeat("a", 153), 3, false},
		{"vietnamese short", "Mất điện lưới", 1, true},
		{"70 ucs2", strings.Repeat("đ", 70), 1, true},
		{"71 ucs2", strings.Repeat("đ", 71), 2, true},
		{"134 ucs2", strings.Repeat("đ", 134), 2, true},
		{"135 ucs2", strings.Repeat("đ", 135), 3, true},
		{"one non-gsm char makes it all ucs2", strings.Repeat("a", 100) + "ấ", 2, true},
		{"emoji is a surrogate pair", strings.Repeat("🔋", 35), 1, true},
		{"surrogate pair not split", strings.Repeat("a", 66) + "🔋" + strings.Repeat("a", 66), 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, u := Segments(tt.body)
			if n != tt.want || u != tt.wantUnicode {
				t.Errorf("Segments = %d, %v; want %d, %v", n, u, tt.want, tt.wantUnicode)
			}
		})
	}
}

func TestFitGSM(t *testing.T) {
	tests := []struct{ in, want string }{
		{"UPS on battery, 87% left", "UPS on battery, 87% left"},
		{"Café déjà vu {ok}", "Café déjà vu {ok}"}, // already GSM-7: unchanged
		{"Mất điện lưới, UPS đang chạy pin", "Mat dien luoi, UPS dang chay pin"},
		{"ĐIỆN ĐÃ CÓ LẠI sau 4 phút", "DIEN DA CO LAI sau 4 phut"},
		{"Pin yếu, còn khoảng 3 phút — hãy tắt máy", "Pin yeu, con khoang 3 phut - hay tat may"},
		{"Nhiệt độ pin 35°C", "Nhiet do pin 35C"},
		{"“Quoted” ‘text’…", "\"Quoted\" 'text'..."},
		{"Battery 🔋 low", "Battery ? low"},
	}
	for _, tt := range tests {
		got := FitGSM(tt.in)
		if got != tt.want {
			t.Errorf("FitGSM(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !IsGSM(got) {
			t.Errorf("FitGSM(%q) = %q is not GSM-7", tt.in, got)
		}
	}
	// The point of FitGSM: a Vietnamese alert that costs 2 UCS-2 segments
	// fits one GSM-7 segment.
	vi := "Cảnh báo: UPS 123456789012 tại Văn phòng Hà Nội đang chạy bằng pin, còn khoảng 12 phút."
	if n, u := Segments(vi); n != 2 || !u {
		t.Fatalf("precondition: Segments(vi) = %d, %v", n, u)
	}
	if n, u := Segments(FitGSM(vi)); n != 1 || u {
		t.Errorf("Segments(FitGSM(vi)) = %d, %v; want 1, false", n, u)
	}
}

func FuzzFitGSM(f *testing.F) {
	f.Add("Mất điện lưới")
	f.Add("€{}[]~")
	f.Fuzz(func(t *testing.T, s string) {
		if out := FitGSM(s); !IsGSM(out) {
			t.Errorf("FitGSM(%q) = %q not GSM-7", s, out)
		}
		if n, _ := Segments(s); (n == 0) != (s == "") {
			t.Errorf("Segments(%q) = %d", s, n)
		}
	})
}
