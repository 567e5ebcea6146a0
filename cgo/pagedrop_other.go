//go:build !linux

package cgo

// dropMappedPages does nothing outside Linux: the pages of the quantizer's
// input stay mapped until it returns.
func dropMappedPages(string) (stop func()) { return func() {} }

// dropRegisteredPages does nothing outside Linux.
func dropRegisteredPages(string) {}
