package events

import (
	"context"
	"fmt"
	"strings"
)

// TypeInfo is the part of a pg_type row that decides how a column's text output maps to JSON.
type TypeInfo struct {
	OID      uint32
	Name     string
	Type     byte   // pg_type.typtype: b base, c composite, d domain, e enum, p pseudo, r range, m multirange
	Category byte   // pg_type.typcategory
	BaseOID  uint32 // pg_type.typbasetype: the base type of a domain, else 0
	ElemOID  uint32 // pg_type.typelem: the element type of an array (also set on a few non-arrays)
	Delim    byte   // pg_type.typdelim: the delimiter array_out prints between elements of this type
}

// IsArray reports whether t is a true array type, whose text output is array_out's brace syntax.
// Fixed-length types with a typelem (point, name) and the int2vector/oidvector types are not: they
// are not named with the leading underscore of array types.
func (t TypeInfo) IsArray() bool {
	return t.Category == 'A' && t.ElemOID != 0 && strings.HasPrefix(t.Name, "_")
}

// Catalog answers the questions about types and keys that pgoutput messages leave open. The
// Encoder calls it only while handling a Relation message, never on the per-row path.
type Catalog interface {
	// ResolveType returns the pg_type row of oid; an unknown oid is an error wrapping ErrUnknownType.
	ResolveType(ctx context.Context, oid uint32) (TypeInfo, error)
	// PrimaryKey returns the primary key's column names in key order, or nil if the table has none.
	PrimaryKey(ctx context.Context, relationID uint32) ([]string, error)
}

// Invalidator is implemented by Catalogs that cache: the Encoder calls it when a Type or Relation
// message says a type or table is about to be (re)described, so cached answers are read afresh.
type Invalidator interface {
	InvalidateType(oid uint32)
	InvalidateRelation(relationID uint32)
}

// Builtin type OIDs with a mapping other than "JSON string" (src/include/catalog/pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// scalarWriter returns the writer of a builtin scalar type, or nil if the type maps to a string
// (or is a domain or array, handled by the caller).
func scalarWriter(oid uint32) valueWriter {
	switch oid {
	case oidBool:
		return writeBool
	case oidBytea:
		return writeBytea
	case oidInt2, oidInt4, oidInt8, oidOID:
		return writeInt
	case oidJSON, oidJSONB:
		return writeJSON
	case oidFloat4, oidFloat8:
		return writeFloat
	case oidTimestamptz:
		return writeTimestamptz
	}
	return nil
}

// maxTypeDepth bounds domain and array indirection, so a cyclic catalog cannot recurse forever.
const maxTypeDepth = 16

// resolve returns the TypeInfo of oid from the builtin table or the Catalog.
func (e *Encoder) resolve(ctx context.Context, oid uint32) (TypeInfo, error) {
	if t, ok := builtinTypes[oid]; ok {
		return t, nil
	}
	if e.cat == nil {
		return TypeInfo{}, fmt.Errorf("%w: oid %d is not builtin and no catalog is configured", ErrUnknownType, oid)
	}
	t, err := e.cat.ResolveType(ctx, oid)
	if err != nil {
		return TypeInfo{}, fmt.Errorf("resolve type %d: %w", oid, err)
	}
	return t, nil
}

// writerFor builds the writer of columns of type oid. Array writers own scratch space, so the
// result belongs to this Encoder.
func (e *Encoder) writerFor(ctx context.Context, oid uint32) (valueWriter, error) {
	return e.writerDepth(ctx, oid, 0)
}

func (e *Encoder) writerDepth(ctx context.Context, oid uint32, depth int) (valueWriter, error) {
	if depth > maxTypeDepth {
		return nil, fmt.Errorf("%w: type %d nests domains or arrays deeper than %d", ErrUnknownType, oid, maxTypeDepth)
	}
	if w := scalarWriter(oid); w != nil {
		return w, nil
	}
	t, err := e.resolve(ctx, oid)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Type == 'd':
		if t.BaseOID == 0 {
			return nil, fmt.Errorf("%w: domain %q (oid %d) has no base type", ErrUnknownType, t.Name, oid)
		}
		return e.writerDepth(ctx, t.BaseOID, depth+1)
	case t.IsArray():
		et, err := e.resolve(ctx, t.ElemOID)
		if err != nil {
			return nil, err
		}
		ew, err := e.writerDepth(ctx, t.ElemOID, depth+1)
		if err != nil {
			return nil, err
		}
		return newArrayWriter(ew, et.Delim), nil
	}
	return writeString, nil
}
