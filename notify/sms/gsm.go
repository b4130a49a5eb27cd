package sms

import (
	"strings"
	"unicode"
	"unicode/utf16"

	"golang.org/x/text/unicode/norm"
)

// The GSM 03.38 default alphabet (3GPP TS 23.038): one septet each. The
// escape character 0x1B is not listed: it only introduces the extension
// table.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// The extension table: ESC + one septet, so two septets each.
const gsmExtension = "\f^{}\\[~]|€"

var gsmSeptets = func() map[rune]int {
	m := make(map[rune]int, len(gsmBasic)+len(gsmExtension))
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExtension {
		m[r] = 2
	}
	return m
}()

// Segment sizes: a single message carries 160 septets or 70 UCS-2 code
// units; a concatenated one loses 7 septets (3 UCS-2 units) per part to the
// user data header.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// IsGSM reports whether body can be sent in the GSM-7 alphabet.
func IsGSM(body string) bool {
	for _, r := range body {
		if gsmSeptets[r] == 0 {
			return false
		}
	}
	return true
}

// Segments returns how many SMS segments body costs and whether it must be
// sent as UCS-2 (any character outside GSM-7). GSM-7 extension characters
// ({}[]~|^€\ and form feed) count two septets; neither an escape pair nor a
// UTF-16 surrogate pair is split across parts, as handsets and Twilio do.
// An empty body is zero segments.
func Segments(body string) (n int, unicode bool) {
	if body == "" {
		return 0, false
	}
	if IsGSM(body) {
		sizes := make([]int, 0, len(body))
		total := 0
		for _, r := range body {
			sizes = append(sizes, gsmSeptets[r])
			total += gsmSeptets[r]
		}
		if total <= gsmSingle {
			return 1, false
		}
		return countParts(sizes, gsmPart), false
	}
	sizes := make([]int, 0, len(body))
	total := 0
	for _, r := range body {
		units := 1
		if utf16.RuneLen(r) == 2 {
			units = 2
		}
		sizes = append(sizes, units)
		total += units
	}
	if total <= ucs2Single {
		return 1, true
	}
	return countParts(sizes, ucs2Part), true
}

// countParts packs characters of the given sizes into parts of capacity
// units without splitting a character.
func countParts(sizes []int, capacity int) int {
	parts, used := 1, 0
	for _, s := range sizes {
		if used+s > capacity {
			parts++
			used = 0
		}
		used += s
	}
	return parts
}

// Replacements for common characters outside GSM-7 that have no
// decomposition to a GSM-7 base letter.
var gsmReplacements = map[rune]string{
	'đ': "d", 'Đ': "D", 'ð': "d", 'Ð': "D", 'ł': "l", 'Ł': "L", 'ı': "i", 'œ': "oe", 'Œ': "OE", 'þ': "th", 'Þ': "Th",
	'‘': "'", '’': "'", '‚': "'", '′': "'", '“': "\"", '”': "\"", '„': "\"", '″': "\"", '«': "\"", '»': "\"",
	'‐': "-", '‑': "-", '‒': "-", '–': "-", '—': "-", '−': "-", '…': "...", '•': "-", '·': ".",
	'\u00a0': " ", '\u2009': " ", '\u202f': " ", '\t': " ", '°': "", '×': "x", '÷': "/",
	'≤': "<=", '≥': ">=", '≈': "~", '→': "->", '←': "<-", '©': "(c)", '®': "(R)", '™': "TM",
}

// FitGSM rewrites body into the GSM-7 alphabet so it costs 160 characters
// per segment instead of UCS-2's 70, which keeps a Vietnamese alert such as
// "Mất điện lưới, UPS đang chạy pin" in one segment.
//
// A body already in GSM-7 is returned unchanged. Otherwise every letter with
// a diacritic is reduced to its base letter, including the few accented
// letters GSM-7 has (é, à...), so a Vietnamese text reads consistently
// unaccented, the way it is typed when diacritics are unavailable ("Mat dien
// luoi, UPS dang chay pin"); đ/Đ become d/D; typographic quotes, dashes,
// ellipsis and spaces become their ASCII forms; the degree sign is dropped
// ("35°C" -> "35C"); anything else outside GSM-7 (emoji, CJK) becomes "?".
// FitGSM never truncates: a long text stays several segments, which the
// caller can check with Segments.
func FitGSM(body string) string {
	if IsGSM(body) {
		return body
	}
	var b strings.Builder
	b.Grow(len(body))
	for _, r := range body {
		if rep, ok := gsmReplacements[r]; ok {
			b.WriteString(rep)
			continue
		}
		if base, ok := stripMarks(r); ok {
			b.WriteString(base)
			continue
		}
		if gsmSeptets[r] != 0 {
			b.WriteRune(r)
			continue
		}
		b.WriteByte('?')
	}
	return b.String()
}

// stripMarks decomposes r (NFD) and drops the combining marks; it reports
// false when r has no marks or its base is not GSM-7.
func stripMarks(r rune) (string, bool) {
	d := norm.NFD.String(string(r))
	if len(d) == len(string(r)) && d == string(r) {
		return "", false
	}
	var b strings.Builder
	for _, c := range d {
		if unicode.Is(unicode.Mn, c) {
			continue
		}
		if gsmSeptets[c] == 0 {
			return "", false
		}
		b.WriteRune(c)
	}
	return b.String(), b.Len() > 0
}
