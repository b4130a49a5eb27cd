// Package notify holds the types shared by the notification pipeline and the
// provider integrations (notify/fcm, notify/apns, notify/sms).
//
// A provider is a Sender: it delivers one Message to a batch of recipients and
// says, per recipient, whether the attempt was delivered, is worth retrying,
// failed for good, or proved the recipient address dead. The pipeline stages
// (routing, dedup, retry, audit) are built on these types only, so a provider
// never needs to know about alerts, accounts or the outbox.
package notify

import (
	"context"
	"errors"
	"time"
)

// Message is what a recipient sees. It is already rendered in the
// recipient's language.
type Message struct {
	Title string
	Body  string
	// Critical raises the delivery priority (FCM high priority, APNS
	// priority 10 and time-sensitive) so the phone wakes up.
	Critical bool
	// CollapseKey identifies the (unit, rule) pair: a later message with the
	// same key replaces an earlier one on the device, so "power restored"
	// replaces "on battery" instead of stacking under it.
	CollapseKey string
	// Expires is when the message stops being worth showing; the zero value
	// leaves the provider's default. A message already expired is not sent.
	Expires time.Time
	// Data is the app's machine-readable payload (unit, rule, alert id).
	Data map[string]string
}

// Outcome classifies one delivery attempt.
type Outcome uint8

const (
	// Delivered means the provider accepted the message.
	Delivered Outcome = iota
	// Retry means a transient failure (429, 5xx, network, cancelled): the
	// same message may be sent again later, after Result.RetryAfter if set.
	Retry
	// Failed means a permanent failure that a retry would repeat (bad
	// request, bad credentials, message expired).
	Failed
	// TokenGone means the recipient address is dead (uninstalled app,
	// invalid token, opted-out or non-mobile number): remove it.
	TokenGone
)

var outcomeNames = [...]string{Delivered: "delivered", Retry: "retry", Failed: "failed", TokenGone: "token_gone"}

// String returns the lower-case name used in metrics and the audit log.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Result is the outcome of sending one Message to one recipient.
type Result struct {
	// To is the recipient exactly as passed to Send, so the caller can
	// remove a dead token. It must never be logged.
	To      string
	Outcome Outcome
	// RetryAfter is the provider's requested delay (Retry-After), zero when
	// the provider gave none.
	RetryAfter time.Duration
	// Err is nil when Delivered. It never contains the recipient address.
	Err error
	// ProviderResponse is a short provider-side summary for the audit log
	// ("200 projects/p/messages/1", "410 Unregistered", "400 21610"); it
	// never contains the token or phone number.
	ProviderResponse string
}

// Sender delivers messages through one provider.
type Sender interface {
	// Channel names the provider: "fcm", "apns" or "sms".
	Channel() string
	// Send delivers m to every recipient in to and returns one Result per
	// recipient, in the same order. It never returns fewer results than
	// recipients; a cancelled ctx yields Retry results for the rest.
	Send(ctx context.Context, m Message, to []string) []Result
	// MaxBatch is how many recipients one Send call should carry at most;
	// Send accepts more and splits them itself.
	MaxBatch() int
}

// ErrExpired is returned (as Result.Err, with Outcome Failed) for a message
// whose Expires time has passed before it could be sent: a stale "on
// battery" alert must not be shown hours after the power came back.
var ErrExpired = errors.New("notify: message expired before sending")
