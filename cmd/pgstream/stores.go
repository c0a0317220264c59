package main

// The checkpoint store types pgstream's configuration knows: each package registers its type
// (package checkpoint). A new store is a package under checkpoint/ and a line here.
import (
	_ "github.com/pgstream/pgstream/checkpoint/file"
)
