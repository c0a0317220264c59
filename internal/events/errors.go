package events

import "errors"

// Errors callers can branch on with errors.Is. Returned errors wrap one of them with context naming
// the relation and column.
var (
	// ErrUnknownRelation: a row or truncate message names a relation id no Relation message announced.
	ErrUnknownRelation = errors.New("unknown relation")
	// ErrColumnCount: a tuple's column count differs from its Relation's.
	ErrColumnCount = errors.New("tuple column count does not match relation")
	// ErrValue: a column's text is not valid output of its type.
	ErrValue = errors.New("invalid column value")
	// ErrBinaryValue: a column arrived in binary format; pgstream asks for text.
	ErrBinaryValue = errors.New("binary column value")
	// ErrColumnKind: a tuple column has a kind other than null, unchanged TOAST, text or binary.
	ErrColumnKind = errors.New("unknown tuple column kind")
	// ErrUnknownType: a column's type is neither builtin nor resolvable through the Catalog.
	ErrUnknownType = errors.New("unknown type")
)

// ErrTransactional: a logical message's transactional flag disagrees with the transaction passed.
var ErrTransactional = errors.New("logical message transactional flag does not match transaction")

// ErrNoTransaction: a row or truncate change was passed without its transaction.
var ErrNoTransaction = errors.New("change outside a transaction")
