//! Fault injection for the e2e tests (tests/e2e/cert.sh): writes a certificate chain and its key
//! into a stopped agent's store image under a domain of our choosing, the way a restored backup
//! or a store copied from another router would, so the agent's status checks meet a stored
//! certificate that is not for the name it is stored under.
//!
//!   cargo run -p tinytail-hal --example store_put_cert -- IMAGE DOMAIN CHAIN.pem KEY.pk8
//!
//! KEY.pk8 is PKCS#8 DER, the form the agent stores (`openssl pkcs8 -topk8 -nocrypt -outform DER`).
//! One transaction, as the agent's own issuance.

use std::path::Path;
use std::process::ExitCode;

use tinytail_hal::store::{self, Record, Transaction};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image, domain, chain, key] = args.as_slice() else {
        eprintln!("usage: store_put_cert IMAGE DOMAIN CHAIN.pem KEY.pk8");
        return ExitCode::from(2);
    };
    match put(Path::new(image), domain, Path::new(chain), Path::new(key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_put_cert: {e}");
            ExitCode::FAILURE
        }
    }
}

fn put(image: &Path, domain: &str, chain: &Path, key: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (chain, key) = (read(chain)?, read(key)?);
    // The storage argument is ignored when a path is given.
    let storage = tinytail_hal::board::Storage::File("");
    let mut store = store::open(&storage, Some(image)).map_err(|e| format!("{}: {e}", image.display()))?;
    let mut tx = Transaction::new();
    tx.put(Record::Certificate(domain), &chain).map_err(|e| e.to_string())?;
    tx.put(Record::CertificateKey(domain), &key).map_err(|e| e.to_string())?;
    store.commit(&tx).map_err(|e| e.to_string())
}
