//! A small certificate authority for a cluster: `ca.pem`/`ca-key.pem`, and per node
//! `NAME.pem`/`NAME-key.pem` with the node's IP addresses and DNS names, good for serving and
//! for presenting to peers (mutual TLS). Keys are written readable by their owner only, and an
//! existing file is never overwritten.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::TlsError;

/// The files `init` writes in a directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca-key.pem"))
}

/// The files `node` writes for `name`.
pub fn node_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("cannot make the certificate: {e}"))
}

fn write_new(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        message: if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists; remove it first to make a new one".into()
        } else {
            e.to_string()
        },
    })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// The CA's certificate parameters: the same every time, so the issuer of a node certificate
/// can be rebuilt from the CA's key alone (its name and key identifier match the CA's).
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "switchyard cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = params.not_before + std::time::Duration::from_secs(10 * 366 * 86_400);
    Ok(params)
}

/// Write a new CA (valid for ten years) in `dir`.
pub fn init(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let (cert_path, key_path) = ca_paths(dir);
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = ca_params()?.self_signed(&key).map_err(gen_err)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// Write a certificate for node `name`, signed by the CA in `dir`, for these addresses and
/// names (valid for five years, for serving and for client authentication).
pub fn node(
    dir: &Path,
    name: &str,
    ips: &[IpAddr],
    dns: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(TlsError::Config(format!(
            "name: {name:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    if ips.is_empty() && dns.is_empty() {
        return Err(TlsError::Config(
            "give the node's addresses: --ip and/or --dns (clients check them)".into(),
        ));
    }
    let (ca_cert, ca_key) = ca_paths(dir);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| TlsError::File {
            path: p.display().to_string(),
            message: format!("{e} (make the CA first: switchyard certs init)"),
        })
    };
    let ca_key_pair = KeyPair::from_pem(&read(&ca_key)?).map_err(gen_err)?;
    // The certificate must be there too: clients are given it.
    read(&ca_cert)?;
    let issuer = Issuer::new(ca_params()?, ca_key_pair);
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::new(dns.to_vec()).map_err(gen_err)?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = params.not_before + std::time::Duration::from_secs(5 * 366 * 86_400);
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    let (cert_path, key_path) = node_paths(dir, name);
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_and_a_node_certificate_load_as_server_and_client_configurations() {
        let dir = tempfile::TempDir::new().unwrap();
        let (ca, _) = init(dir.path()).unwrap();
        assert!(init(dir.path()).is_err(), "never overwrites");
        let (cert, key) = node(
            dir.path(),
            "node1",
            &["127.0.0.1".parse().unwrap()],
            &["localhost".into()],
        )
        .unwrap();
        let tls = crate::ServerTls::load(crate::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        })
        .unwrap();
        tls.reload().unwrap();
        crate::client_config(&[&ca], Some((&cert, &key))).unwrap();
        assert!(node(dir.path(), "bad/name", &[], &["a".into()]).is_err());
        assert!(node(dir.path(), "node2", &[], &[]).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
