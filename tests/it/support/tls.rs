//! A private test CA and a server certificate for `localhost` / `127.0.0.1`, made with the
//! `openssl` CLI, and the rustls server configuration that serves it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::fake_github::openssl;

pub struct TestPki {
    pub dir: PathBuf,
}

impl TestPki {
    /// `ca.pem`/`ca.key`, and `server.crt`/`server.key` signed by it, in `dir`.
    pub fn create(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
        ];
        let ca_out = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=kici test CA",
        ];
        openssl(dir, &[&ca[..], &ca_out[..]].concat());
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.crt",
            ],
        );
        TestPki {
            dir: dir.to_owned(),
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// rustls server settings presenting `server.crt`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        kici_orchestrator::install_crypto_provider();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.join("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(self.dir.join("server.key")).unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }
}
