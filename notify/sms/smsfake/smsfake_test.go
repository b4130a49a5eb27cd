package smsfake

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAuthAndForm(t *testing.T) {
	s := New("AC1", "tok")
	defer s.Close()
	tests := []struct {
		name, sid, user, pass string
		form                  url.Values
		want, wantCode        int
	}{
		{"no auth", "AC1", "", "", url.Values{"To": {"+1"}, "From": {"+2"}, "Body": {"b"}}, 401, 20003},
		{"wrong token", "AC1", "AC1", "nope", url.Values{"To": {"+1"}, "From": {"+2"}, "Body": {"b"}}, 401, 20003},
		{"other account", "AC2", "AC1", "tok", url.Values{"To": {"+1"}, "From": {"+2"}, "Body": {"b"}}, 401, 20003},
		{"no to", "AC1", "AC1", "tok", url.Values{"From": {"+2"}, "Body": {"b"}}, 400, 21604},
		{"no body", "AC1", "AC1", "tok", url.Values{"To": {"+1"}, "From": {"+2"}}, 400, 21602},
		{"ok", "AC1", "AC1", "tok", url.Values{"To": {"+1"}, "From": {"+2"}, "Body": {"b"}}, 201, 0},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/2010-04-01/Accounts/"+tt.sid+"/Messages.json", strings.NewReader(tt.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			SID    string `json:"sid"`
			Code   int    `json:"code"`
			Status any    `json:"status"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || body.Code != tt.wantCode {
			t.Errorf("%s: %d code %d, want %d code %d", tt.name, resp.StatusCode, body.Code, tt.want, tt.wantCode)
		}
		if tt.want == 201 && (!strings.HasPrefix(body.SID, "SM") || body.Status != "queued") {
			t.Errorf("%s: body %+v, want a queued SM message", tt.name, body)
		}
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("recorded %d requests, want 3 (authenticated ones)", n)
	}
}
