package templates

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/notify/sms"
	"github.com/upswatch/upswatch/rules"
)

func TestRender(t *testing.T) {
	s, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	hcm, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	at := time.Date(2025, 11, 24, 9, 5, 0, 0, time.UTC)
	firing := &rules.Event{Kind: rules.Firing, Rule: "on_battery", Severity: rules.Warning, Serial: "123456789012", At: at,
		Values: []rules.Value{{Name: "battery.runtime", Value: 1500}}}
	restored := &rules.Event{Kind: rules.Resolved, Rule: "on_battery", Serial: "123456789012", At: at, Duration: 4*time.Minute + 12*time.Second}
	low := &rules.Event{Kind: rules.Firing, Rule: "low_battery", Serial: "123456789012", At: at, Values: []rules.Value{{Name: "battery.runtime", Value: 170}}}
	lost := &rules.Event{Kind: rules.Firing, Rule: "comm_lost", Serial: "123456789012", At: at}
	unknown := &rules.Event{Kind: rules.Reminder, Rule: "bypass", Serial: "123456789012", At: at, Message: "UPS on bypass"}
	health := &rules.Event{Kind: rules.Firing, Rule: "battery_health", Severity: rules.Warning, Serial: "123456789012", At: at,
		Values: []rules.Value{{Name: "battery.soh", Value: 0.776}}}
	aged := &rules.Event{Kind: rules.Firing, Rule: "battery_age", Severity: rules.Warning, Serial: "123456789012", At: at,
		Values: []rules.Value{{Name: "battery.age.effective_days", Value: 1190}}}
	aborted := &rules.Event{Kind: rules.Firing, Rule: "battery_test_aborted", Severity: rules.Warning, Serial: "123456789012", At: at,
		Values: []rules.Value{{Name: "aborted", Value: 2}}}
	tests := []struct {
		lang      string
		ev        *rules.Event
		title     string
		body      string
		smsPrefix string
	}{
		{"en", firing, "⚡ Office is on battery", "Mains power lost at 16:05. About 25 min of battery left.", "Office is on battery since 16:05. About 25 min left."},
		{"vi", firing, "⚡ Office đang chạy bằng pin", "Mất điện lưới lúc 16:05. Pin còn khoảng 25 phút.", "Office dang chay bang pin tu 16:05. Con khoang 25 phut."},
		{"en", restored, "🔌 Office: power restored", "Mains power is back after 4 min 12 s.", "Office: power restored after 4 min 12 s."},
		{"vi", restored, "🔌 Office: đã có điện trở lại", "Điện lưới đã có lại sau 4 phút 12 giây.", "Office: da co dien tro lai sau 4 phut 12 giay."},
		{"en", low, "🪫 Office: battery low", "About 2 min of runtime left. Save your work and shut down.", "Office: battery low, about 2 min left."},
		{"en", lost, "📡 Office is not reporting", "No data from the UPS since 16:05. Check its network connection.", "Office is not reporting No data"},
		{"en", unknown, "⚠️ Office: UPS on bypass", "Alert bypass (info) since 16:05.", "Office: UPS on bypass Alert"},
		{"en", health, "🔋 Office: battery wearing out", "The battery holds about 78 % of its first runtime; plan its replacement.", "Office: battery wearing out The battery holds about 78 %"},
		{"vi", health, "🔋 Office: pin đang xuống cấp", "Pin chỉ còn giữ khoảng 78 % thời gian chạy ban đầu; hãy lên kế hoạch thay pin.", "Office: pin dang xuong cap"},
		{"en", aged, "🔋 Office: battery getting old", "The battery's effective age, counting heat, is 1190 days. Batteries in UPS service last 3 to 5 years.", "Office: battery getting old"},
		{"vi", aborted, "🔋 Office: tự kiểm tra liên tục bị hủy", "2 lần tự kiểm tra bị hủy trong 30 ngày: pin yếu thường lộ ra như vậy trước tiên.", "Office: tu kiem tra"},
		{"fr", firing, "⚡ Office is on battery", "Mains power lost at 16:05. About 25 min of battery left.", "Office is on battery"},
	}
	for _, tt := range tests {
		t.Run(tt.lang+"/"+tt.ev.Rule+"/"+tt.ev.Kind.String(), func(t *testing.T) {
			got, err := s.Render(tt.lang, NewData(tt.ev, "Office", "hq", hcm, at))
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != tt.title || got.Body != tt.body {
				t.Fatalf("got %q / %q\nwant %q / %q", got.Title, got.Body, tt.title, tt.body)
			}
			if !strings.HasPrefix(got.SMS, tt.smsPrefix) {
				t.Fatalf("sms %q, want prefix %q", got.SMS, tt.smsPrefix)
			}
			if n, unicode := sms.Segments(got.SMS); n != 1 || unicode {
				t.Fatalf("sms %q: %d segments, unicode %v", got.SMS, n, unicode)
			}
		})
	}
	if tx, err := s.Test("vi"); err != nil || !strings.Contains(tx.Title, "Thông báo thử") {
		t.Fatalf("Test(vi) = %+v, %v", tx, err)
	}
}

func TestOverrideDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("en.yaml", "rules:\n  on_battery:\n    firing:\n      title: \"{{.Name}} lost mains\"\n      body: \"since {{.Time}}\"\n")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ev := &rules.Event{Kind: rules.Firing, Rule: "on_battery", Serial: "123456789012", At: time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)}
	got, _ := s.Render("en", NewData(ev, "", "", time.UTC, ev.At))
	if got.Title != "123456789012 lost mains" || got.Body != "since 08:00" {
		t.Fatalf("override not applied: %+v", got)
	}
	ev.Kind = rules.Resolved
	if got, _ := s.Render("en", NewData(ev, "X", "", time.UTC, ev.At)); got.Title != "🔌 X: power restored" {
		t.Fatalf("built-in resolved lost by the override: %+v", got)
	}

	for name, tc := range map[string]struct{ file, body, want string }{
		"bad field": {"en.yaml", "rules:\n  on_battery:\n    firing:\n      title: \"{{.Nmae}}\"\n      body: x\n", "can't evaluate field Nmae"},
		"bad kind":  {"en.yaml", "rules:\n  on_battery:\n    fired:\n      title: x\n      body: x\n", `unknown kind "fired"`},
		"new lang":  {"de.yaml", "rules:\n  default:\n    firing:\n      title: x\n      body: x\n", "de.yaml: test: title and body are required"},
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, tc.file), []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(d); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestWeekly renders the weekly summary of a hand-counted week (3
// outages of 31, 12 and 4 min: 47 min on battery; 992 of 1000 ten-minute
// voltage means in band) and of a week without outages or voltage
// readings, in English and Vietnamese (its decimal comma), with the SMS
// folded to GSM-7.
func TestWeekly(t *testing.T) {
	s, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	busy := WeeklyData{From: "02/03", To: "08/03", Units: 4, Outages: 3, OnBattery: (31 + 12 + 4) * time.Minute,
		Longest: 31 * time.Minute, LongestAt: "Office (hq)", HasMains: true, MainsInBand: 992.0 / 1000 * 100}
	one := WeeklyData{From: "09/03", To: "15/03", Units: 1, Outages: 1, OnBattery: 90 * time.Second, Longest: 90 * time.Second,
		LongestAt: "Kho"}
	quiet := WeeklyData{From: "09/03", To: "15/03", Units: 1}
	tests := []struct {
		name, lang string
		d          WeeklyData
		title      string
		body       string
		sms        string
	}{
		{"busy", "en", busy, "📊 Your UPS week 02/03-08/03",
			"Last week: 3 outages, 47 min on battery, longest 31 min at Office (hq); mains in band 99.2 %.",
			"Your UPS week 02/03-08/03 Last week: 3 outages, 47 min on battery, longest 31 min at Office (hq); mains in band 99.2 %."},
		{"busy", "vi", busy, "📊 Tuần UPS của bạn 02/03-08/03",
			"Tuần trước: 3 lần mất điện, 47 phút chạy bằng pin, lâu nhất 31 phút tại Office (hq); điện lưới trong ngưỡng 99,2 %.",
			"Tuan UPS cua ban 02/03-08/03 Tuan truoc: 3 lan mat dien, 47 phut chay bang pin, lau nhat 31 phut tai Office (hq); dien luoi trong nguong 99,2 %."},
		{"one outage", "en", one, "📊 Your UPS week 09/03-15/03",
			"Last week: 1 outage, 1 min 30 s on battery, longest 1 min 30 s at Kho.", ""},
		{"no outages, no voltage", "en", quiet, "📊 Your UPS week 09/03-15/03", "Last week: no outages on your 1 unit.", ""},
		{"no outages, no voltage", "vi", quiet, "📊 Tuần UPS của bạn 09/03-15/03",
			"Tuần trước: không có lần mất điện nào trên 1 thiết bị của bạn.", ""},
		{"a language without its own", "fr", quiet, "📊 Your UPS week 09/03-15/03", "Last week: no outages on your 1 unit.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.lang+"/"+tt.name, func(t *testing.T) {
			got, err := s.Weekly(tt.lang, tt.d)
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != tt.title || got.Body != tt.body {
				t.Fatalf("got %q / %q\nwant %q / %q", got.Title, got.Body, tt.title, tt.body)
			}
			if tt.sms != "" && got.SMS != sms.FitGSM(tt.sms) {
				t.Errorf("sms = %q, want %q", got.SMS, sms.FitGSM(tt.sms))
			}
		})
	}
}
