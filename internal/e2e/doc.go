// Package e2e holds pgstream's end-to-end tests: the whole pipeline, and the real pgstream binary,
// against a throwaway PostgreSQL cluster started by internal/pgtest. It has no non-test code.
package e2e
