// Command pki writes the throw-away PKI of the test control plane: a CA, the kube-apiserver
// serving certificate, the service-account key pair and one client certificate plus kubeconfig
// per user. Standard library only, so it builds in a second wherever Go is, without openssl.
//
//	pki -dir DIR -server https://127.0.0.1:16443 -user admin=pmp-admin/system:masters -user ...
//
// A -user is FILE=COMMON_NAME[/ORGANIZATION[/ORGANIZATION...]]: it writes DIR/FILE.crt,
// DIR/FILE.key and DIR/FILE.kubeconfig (certificates embedded, so the file stands alone).
// The API server maps the common name to the user name and the organizations to groups.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type users []string

func (u *users) String() string     { return strings.Join(*u, ",") }
func (u *users) Set(v string) error { *u = append(*u, v); return nil }

func main() {
	dir := flag.String("dir", "", "output directory (created)")
	server := flag.String("server", "https://127.0.0.1:16443", "API server URL written to the kubeconfigs")
	validity := flag.Duration("validity", 365*24*time.Hour, "certificate lifetime")
	var us users
	flag.Var(&us, "user", "FILE=CN[/O...] client certificate and kubeconfig (repeatable)")
	flag.Parse()
	if *dir == "" {
		fail(fmt.Errorf("-dir is required"))
	}
	if err := run(*dir, *server, *validity, us); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pki:", err)
	os.Exit(1)
}

func run(dir, server string, validity time.Duration, us users) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	notBefore := time.Now().Add(-time.Hour) // tolerate small clock differences
	notAfter := notBefore.Add(validity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pmp-testenv-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writeCert(dir, "ca", caDER, caKey); err != nil {
		return err
	}

	// Serving certificate: every name a client may use for the API server, including the
	// in-cluster ones (the `kubernetes` Service gets the first IP of --service-cluster-ip-range).
	if err := leaf(dir, "apiserver", ca, caKey, notBefore, notAfter, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.96.0.1")},
	}); err != nil {
		return err
	}

	// Service-account token signing key (RSA: RS256 is what every token consumer accepts).
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPriv, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "PRIVATE KEY", saPriv, 0o600); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", saPub, 0o644); err != nil {
		return err
	}

	for _, u := range us {
		file, subject, ok := strings.Cut(u, "=")
		if !ok || file == "" || subject == "" {
			return fmt.Errorf("bad -user %q, want FILE=CN[/O...]", u)
		}
		parts := strings.Split(subject, "/")
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: parts[0], Organization: parts[1:]},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := leaf(dir, file, ca, caKey, notBefore, notAfter, tmpl); err != nil {
			return err
		}
		if err := kubeconfig(dir, file, parts[0], server); err != nil {
			return err
		}
	}
	return nil
}

func leaf(dir, name string, ca *x509.Certificate, caKey crypto.Signer, notBefore, notAfter time.Time, tmpl *x509.Certificate) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writeCert(dir, name, der, key)
}

func writeCert(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func kubeconfig(dir, file, user, server string) error {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read("ca.crt")
	if err != nil {
		return err
	}
	crt, err := read(file + ".crt")
	if err != nil {
		return err
	}
	key, err := read(file + ".key")
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: pmp-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: pmp-testenv
  context:
    cluster: pmp-testenv
    user: %s
current-context: pmp-testenv
`, server, ca, user, crt, key, user)
	return os.WriteFile(filepath.Join(dir, file+".kubeconfig"), []byte(cfg), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		fail(err)
	}
	return n
}
