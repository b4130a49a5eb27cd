// Package yamlenv is the configuration scheme upswatch and its agent
// share: a YAML file whose misspelt keys are errors, then one environment
// variable per key, named after the key's yaml tags (mqtt.url ->
// PREFIX_MQTT_URL), so a new key gets its variable for free.
//
// It imports only the standard library and the YAML parser, so the agent
// stays free of the server's packages.
package yamlenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeOf(time.Duration(0))

// Decode reads YAML into out (a pointer to a config struct); a key out
// does not know is an error, not a silent default, and an empty document
// leaves out as it is.
func Decode(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Scheme names the environment variables of one config struct.
type Scheme struct {
	// Prefix starts every variable (UPSWATCH_, UPSWATCH_AGENT_).
	Prefix string
}

// Name is the environment variable of a key.
func (s Scheme) Name(key string) string {
	return s.Prefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys lists every key of the struct type t with its variable, in
// declaration order.
func (s Scheme) Keys(t reflect.Type) [][2]string {
	var out [][2]string
	walk(t, "", func(key string, _ []int) { out = append(out, [2]string{key, s.Name(key)}) }, nil)
	return out
}

// Apply sets the fields of the struct cfg points to from the variables
// lookup finds, and reports every bad value naming its key and variable.
func (s Scheme) Apply(cfg any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(cfg).Elem()
	var errs []error
	walk(v.Type(), "", func(key string, index []int) {
		raw, ok := lookup(s.Name(key))
		if !ok {
			return
		}
		if err := set(v.FieldByIndex(index), raw); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (from %s): %w", key, s.Name(key), err))
		}
	}, nil)
	return errors.Join(errs...)
}

// walk calls leaf for every key of t: nested structs (but durations) are
// sections, their fields keys below them.
func walk(t reflect.Type, prefix string, leaf func(key string, index []int), index []int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		idx := append(append([]int{}, index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walk(f.Type, key, leaf, idx)
			continue
		}
		leaf(key, idx)
	}
}

// set parses one variable's text into a field: durations like 10s,
// strings, integers, numbers, booleans, and lists given as YAML.
func set(f reflect.Value, s string) error {
	s = strings.TrimSpace(s)
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("not a duration like 10s or 5m: %q", s)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		f.SetFloat(x)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		f.SetBool(b)
	case f.Kind() == reflect.Slice:
		p := reflect.New(f.Type())
		dec := yaml.NewDecoder(strings.NewReader(s))
		dec.KnownFields(true)
		if err := dec.Decode(p.Interface()); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("not a YAML list: %w", err)
		}
		f.Set(p.Elem())
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}
