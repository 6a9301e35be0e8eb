//go:build !goexperiment.runtimesecret

package keyring

// protect runs f. Without GOEXPERIMENT=runtimesecret the runtime cannot erase
// f's temporaries; the explicit wipes in this package are all there is.
func protect(f func()) { f() }
