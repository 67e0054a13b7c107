// Package archtest holds the tests that guard the project's architecture:
// one-way dependencies, a self-contained wire contract, documented packages.
package archtest
