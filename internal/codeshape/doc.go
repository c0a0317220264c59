// Package codeshape holds the test that keeps the code within the sizes its design sets: in internal/
// and cmd/ no struct type with more than 20 fields and no function over 100 lines, no Go file over
// 700 lines outside bench/, and cmd/pgstream naming no sink package
// and no checkpoint store package but in blank imports.
package codeshape
