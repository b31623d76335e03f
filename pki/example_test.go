package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/proglog/proglog/pki"
)

// A CA issues a server certificate and a client certificate whose Common
// Name is the identity the server's ACL sees.
func Example() {
	ca, err := pki.NewCA("example CA")
	if err != nil {
		panic(err)
	}
	serverPEM, _, err := ca.IssueServer("node-1", []string{"localhost", "127.0.0.1"})
	if err != nil {
		panic(err)
	}
	clientPEM, _, err := ca.IssueClient("alice")
	if err != nil {
		panic(err)
	}
	for _, certPEM := range [][]byte{serverPEM, clientPEM} {
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			panic(err)
		}
		fmt.Println(cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses, cert.CheckSignatureFrom(ca.Cert) == nil)
	}
	// Output:
	// node-1 [localhost] [127.0.0.1] true
	// alice [] [] true
}
