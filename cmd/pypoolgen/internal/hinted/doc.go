// Package hinted holds pypoolgen's golden bindings: those of
// testdata/pypoolgen/pypool_hinted.py, a module that uses every hint
// pypoolgen supports. TestGolden (cmd/pypoolgen) checks that they are what
// pypoolgen writes today; hinted_test.go calls through them against real
// workers.
package hinted

//go:generate go run ../.. -module pypool_hinted -out hinted_gen.go -pythonpath ../../../../testdata/pypoolgen
