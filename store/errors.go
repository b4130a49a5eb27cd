package store

import "errors"

// ErrBadQuery is returned (wrapped, with the reason) by Query for a query
// no backend can answer: an invalid serial, To not after From, a
// non-positive Every, or too many buckets. Callers map it to a client
// error (HTTP 400) rather than a server failure.
var ErrBadQuery = errors.New("bad query")

// ErrUnavailable is returned (wrapped, with the cause) by a backend whose
// server cannot take the request now: unreachable, timed out, overloaded
// (HTTP 429) or failing (5xx). Nothing of the request may be assumed
// done; the caller retries later with backoff.
var ErrUnavailable = errors.New("history store unavailable")
