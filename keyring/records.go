package keyring

// Records adapts a Keyring to stores that seal whole records as bytes
// under a record key (notify/recipients.Sealer): the record key is the
// associated data, so a sealed record copied under another key fails to
// open.
type Records struct {
	Keyring *Keyring
}

// Seal seals plain, bound to the record key.
func (s Records) Seal(recordKey string, plain []byte) ([]byte, error) {
	out, err := s.Keyring.Seal(plain, []byte(recordKey))
	if err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// Open opens a record sealed under recordKey.
func (s Records) Open(recordKey string, sealed []byte) ([]byte, error) {
	return s.Keyring.Open(string(sealed), []byte(recordKey))
}
