module pmp.dev/testenv/pki

go 1.26.0
