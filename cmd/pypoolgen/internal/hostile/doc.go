// Package hostile holds pypoolgen's bindings of
// cmd/pypoolgen/testdata/pypool_hostile.py, a module whose names,
// signatures and classes push the generator (Go keywords and unicode as
// names, every kind of parameter, classes that hold themselves, defaults
// whose repr changes between runs or spans lines). TestGolden
// (cmd/pypoolgen) checks that they are what pypoolgen writes today;
// hostile_test.go calls through them against real workers.
package hostile

//go:generate go run ../.. -module pypool_hostile -out hostile_gen.go -pythonpath ../../testdata
