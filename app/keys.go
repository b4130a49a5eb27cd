package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/products"
)

// KeysEnv is the environment variable that may hold the whole keyring.
const KeysEnv = config.KeysEnv

// ErrNoSharedKeyring: with an external NATS, every instance must be given
// the same keyring; none is ever generated.
var ErrNoSharedKeyring = errors.New("nats.url is set, so every instance must use one shared keyring")

// loadKeyring returns the keyring and the file it lives in: UPSWATCH_KEYS
// when set (path empty: it cannot be rotated in place), else keys.file.
// On the embedded bus keys.file defaults to DataDir/keyring.json,
// generated with mode 0600 when missing. With nats.url set several
// instances share the accounts, so the keyring must be configured and
// exist: a private one would seal records no other instance can open.
func (a *App) loadKeyring() (*keyring.Keyring, string, error) {
	if v, ok := os.LookupEnv(KeysEnv); ok && v != "" {
		k, err := keyring.FromEnv(v)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", KeysEnv, err)
		}
		a.log.Info("keyring loaded from the environment", "keyring", k)
		return k, "", nil
	}
	shared := a.cfg.NATS.URL != ""
	path := a.cfg.Keys.File
	if path == "" {
		if shared {
			return nil, "", fmt.Errorf("%w: set keys.file (UPSWATCH_KEYS_FILE) to the same keyring file on every instance, "+
				"or UPSWATCH_KEYS to its value; create the first one with `upswatch keys generate FILE`", ErrNoSharedKeyring)
		}
		path = filepath.Join(a.cfg.DataDir, "keyring.json")
	}
	k, err := keyring.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		if shared {
			return nil, "", fmt.Errorf("%w: keys.file %s does not exist; copy the keyring the other instances use there (mode 0600), "+
				"or create the first one with `upswatch keys generate %s`", ErrNoSharedKeyring, path, path)
		}
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

// checkKeyring refuses a keyring that cannot open the personal records
// already stored (another instance's, or an older one of this data dir),
// saying what to do.
func (a *App) checkKeyring(ctx context.Context, accounts *recipients.Store, keys *keyring.Keyring) error {
	err := accounts.CheckSealer(ctx)
	if errors.Is(err, recipients.ErrSealerMismatch) {
		where := "keys.file"
		if v, ok := os.LookupEnv(KeysEnv); ok && v != "" {
			where = KeysEnv
		}
		return fmt.Errorf("keyring (key ids %s, from %s): %w; start every instance with the keyring that sealed them "+
			"(the same keys.file or %s everywhere); this instance refuses to run with another one", strings.Join(keys.IDs(), ","), where, err, KeysEnv)
	}
	if err != nil {
		return fmt.Errorf("keyring check: %w", err)
	}
	return nil
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
