package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgpassfile"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/viper"
)

// fileWarning is a problem worth fixing that does not stop pgstream.
type fileWarning struct {
	Subject string // what it is about: "config file /etc/pgstream.yaml"
	Message string // what is wrong
	Fix     string // what to do
}

var (
	urlPasswordRE  = regexp.MustCompile(`://[^/@\s]*:[^@/\s]+@`)
	keyPasswordRE  = regexp.MustCompile(`(?i)(^|[?&\s])password\s*=\s*[^&\s]`)
	passfileParam  = regexp.MustCompile(`(?i)(?:^|[?&\s])passfile\s*=\s*('[^']*'|[^&\s]+)`)
	secretKeyNames = map[string]bool{"password": true, "token": true}
)

// secretFileWarnings returns a warning for each file holding a password that users other than its
// owner may read: the config file when it holds one, source.password_file, and the password file
// (~/.pgpass, PGPASSFILE or passfile=) when it supplies source.url's password. libpq ignores a
// password file with group or world access; pgconn reads it all the same, so pgstream says so.
func secretFileWarnings(cfg *Config) []fileWarning {
	if runtime.GOOS == "windows" {
		return nil // permissions are ACLs there; libpq does not check them either
	}
	var out []fileWarning
	if cfg.file != "" && configHoldsPassword(cfg.file) {
		if mode, ok := readableByOthers(cfg.file, 0o044); ok {
			out = append(out, fileWarning{Subject: "config file " + cfg.file,
				Message: fmt.Sprintf("holds a password and is %s (mode %04o)", whoCanRead(mode), mode),
				Fix:     "chmod 600 " + cfg.file + ", or move the password to source.password_file"})
		}
	}
	if p := cfg.Source.PasswordFile; p != "" {
		if mode, ok := readableByOthers(p, 0o044); ok {
			out = append(out, fileWarning{Subject: "source.password_file " + p,
				Message: fmt.Sprintf("is %s (mode %04o)", whoCanRead(mode), mode),
				Fix:     "chmod 600 " + p})
		}
	}
	if p := passfileSupplying(cfg); p != "" {
		if mode, ok := readableByOthers(p, 0o077); ok {
			out = append(out, fileWarning{Subject: "password file " + p,
				Message: fmt.Sprintf("supplies the password for source.url and has group or world access (mode %04o): "+
					"pgstream reads it anyway, but libpq (psql, pg_dump) ignores a password file with such permissions", mode),
				Fix: "chmod 600 " + p})
		}
	}
	return out
}

// readableByOthers returns the permission bits of path and whether any of mask is among them.
func readableByOthers(path string, mask os.FileMode) (os.FileMode, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	mode := fi.Mode().Perm()
	return mode, mode&mask != 0
}

func whoCanRead(mode os.FileMode) string {
	switch {
	case mode&0o040 != 0 && mode&0o004 != 0:
		return "readable by its group and by every user"
	case mode&0o004 != 0:
		return "readable by every user"
	case mode&0o040 != 0:
		return "readable by its group"
	}
	return "open to other users"
}

// configHoldsPassword reports whether the config file itself (not the environment or flags) holds
// a password: in a connection URL or string anywhere, or as a password or token key.
func configHoldsPassword(path string) bool {
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return false
	}
	return holdsPassword("", v.AllSettings())
}

func holdsPassword(key string, v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if holdsPassword(k, e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if holdsPassword(key, e) {
				return true
			}
		}
	case string:
		if secretKeyNames[strings.ToLower(key)] {
			return x != ""
		}
		return connStringHasPassword(x)
	}
	return false
}

// connStringHasPassword reports whether s, a URL or key=value string, holds a password.
func connStringHasPassword(s string) bool {
	return urlPasswordRE.MatchString(s) || keyPasswordRE.MatchString(s)
}

// passfileSupplying returns the password file pgconn takes source.url's password from, or "" when
// the password comes from elsewhere (source.password_file, the URL, PGPASSWORD) or nowhere.
func passfileSupplying(cfg *Config) string {
	if cfg.Source.PasswordFile != "" || connStringHasPassword(cfg.Source.URL) || os.Getenv("PGPASSWORD") != "" {
		return ""
	}
	pc, err := pgconn.ParseConfig(cfg.Source.URL)
	if err != nil || pc.Password == "" {
		return ""
	}
	path := ""
	if m := passfileParam.FindStringSubmatch(cfg.Source.URL); m != nil {
		path = strings.Trim(m[1], "'")
		if p, err := url.QueryUnescape(path); err == nil {
			path = p
		}
	} else if p := os.Getenv("PGPASSFILE"); p != "" {
		path = p
	} else if home, err := os.UserHomeDir(); err == nil {
		path = filepath.Join(home, ".pgpass")
	}
	if path == "" {
		return ""
	}
	pf, err := pgpassfile.ReadPassfile(path)
	if err != nil {
		return ""
	}
	host := pc.Host
	if strings.HasPrefix(host, "/") {
		host = "localhost" // as pgconn looks up a Unix socket
	}
	if pf.FindPassword(host, strconv.Itoa(int(pc.Port)), pc.Database, pc.User) != pc.Password {
		return ""
	}
	return path
}
