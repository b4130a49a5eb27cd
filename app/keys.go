package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/products"
)

// KeysEnv is the environment variable that may hold the whole keyring.
const KeysEnv = "UPSWATCH_KEYS"

// loadKeyring returns the keyring and the file it lives in: UPSWATCH_KEYS
// when set (path empty: it cannot be rotated in place), else keys.file
// (default DataDir/keyring.json), generated with mode 0600 when missing.
func (a *App) loadKeyring() (*keyring.Keyring, string, error) {
	if v, ok := os.LookupEnv(KeysEnv); ok && v != "" {
		k, err := keyring.FromEnv(v)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", KeysEnv, err)
		}
		a.log.Info("keyring loaded from the environment", "keyring", k)
		return k, "", nil
	}
	path := a.cfg.Keys.File
	if path == "" {
		path = filepath.Join(a.cfg.DataDir, "keyring.json")
	}
	k, err := keyring.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		if k, err = keyring.Generate(); err != nil {
			return nil, "", err
		}
		if err := k.Save(path); err != nil {
			return nil, "", err
		}
		a.log.Warn("generated a new keyring for personal data; back it up; without it the accounts cannot be read", "path", path)
		return k, path, nil
	}
	if err != nil {
		return nil, "", err
	}
	a.log.Info("keyring loaded", "path", path, "keyring", k)
	return k, path, nil
}

// keyRotator rotates the keyring file and reseals every personal record.
type keyRotator struct {
	mu       sync.Mutex
	keys     *keyring.Keyring
	path     string
	accounts *recipients.Store
}

// rotate adds a new primary key, saves the keyring, then reseals every
// record under it. A keyring from the environment cannot be saved: the
// operator rotates that value (keyring.Rotate, EnvValue) and restarts.
func (k *keyRotator) rotate(ctx context.Context) (string, int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path == "" {
		return "", 0, fmt.Errorf("the keyring comes from %s and cannot be rotated in place", KeysEnv)
	}
	id, err := k.keys.Rotate()
	if err != nil {
		return "", 0, err
	}
	if err := k.keys.Save(k.path); err != nil {
		return "", 0, err
	}
	n, err := k.accounts.Reseal(ctx)
	return id, n, err
}

// loadProducts reads the product catalog: products.file, else
// configs/products.yaml when it exists, else none.
func (a *App) loadProducts() (*products.Catalog, error) {
	path := a.cfg.Products.File
	if path == "" {
		path = filepath.Join("configs", "products.yaml")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			a.log.Warn("no product catalog: registrations check the serial's form only")
			return nil, nil
		}
	}
	c, err := products.Load(path)
	if err != nil {
		return nil, err
	}
	a.log.Info("product catalog loaded", "path", path, "entries", c.Len())
	return c, nil
}
