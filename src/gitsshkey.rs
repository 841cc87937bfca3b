//! Git SSH key pairs for workspace owners (Coder: `gitsshkey.Generate`):
//! what `GET /me/gitsshkey` hands an agent so `git` over SSH works in the
//! workspace. Both halves in OpenSSH formats: the private key as an
//! `OPENSSH PRIVATE KEY` PEM, the public key as an `authorized_keys` line
//! (no comment) ending in a newline.

use std::fmt;
use std::str::FromStr;

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::{Algorithm as SshAlgorithm, EcdsaCurve, LineEnding, PrivateKey};

/// `ssh_keygen_algorithm`: Coder's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Ed25519,
    /// ECDSA on P-256.
    Ecdsa,
    Rsa4096,
}

impl Algorithm {
    pub const NAMES: [&'static str; 3] = ["ed25519", "ecdsa", "rsa4096"];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Ecdsa => "ecdsa",
            Algorithm::Rsa4096 => "rsa4096",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Algorithm::Ed25519),
            "ecdsa" => Ok(Algorithm::Ecdsa),
            "rsa4096" => Ok(Algorithm::Rsa4096),
            _ => Err(format!(
                "expected one of {}",
                Algorithm::NAMES.map(|n| format!("\"{n}\"")).join(", ")
            )),
        }
    }
}

/// A generated pair, as stored and served.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub public_key: String,
    pub private_key: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Generates a fresh pair. RSA-4096 takes a second or more: call it off the
/// async executor.
pub fn generate(algorithm: Algorithm) -> Result<KeyPair, String> {
    let mut rng = rand::rng();
    let key = match algorithm {
        Algorithm::Ed25519 => PrivateKey::random(&mut rng, SshAlgorithm::Ed25519),
        Algorithm::Ecdsa => PrivateKey::random(
            &mut rng,
            SshAlgorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ),
        Algorithm::Rsa4096 => RsaKeypair::random(&mut rng, 4096)
            .and_then(|pair| PrivateKey::new(KeypairData::from(pair), "")),
    }
    .map_err(|e| format!("generating an {algorithm} key: {e}"))?;
    let private_key = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("encoding the private key: {e}"))?
        .to_string();
    let mut public_key = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("encoding the public key: {e}"))?;
    public_key.push('\n');
    Ok(KeyPair {
        public_key,
        private_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_yields_openssh_keys_that_belong_together() {
        for (alg, prefix) in [
            (Algorithm::Ed25519, "ssh-ed25519 "),
            (Algorithm::Ecdsa, "ecdsa-sha2-nistp256 "),
            (Algorithm::Rsa4096, "ssh-rsa "),
        ] {
            let pair = generate(alg).expect("generate");
            assert!(pair.public_key.starts_with(prefix), "{}", pair.public_key);
            assert!(pair.public_key.ends_with('\n') && pair.public_key.matches(' ').count() == 1);
            assert!(
                pair.private_key
                    .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
                "{alg}"
            );
            let parsed = PrivateKey::from_openssh(&pair.private_key).expect("parse back");
            assert_eq!(
                format!("{}\n", parsed.public_key().to_openssh().expect("encode")),
                pair.public_key
            );
            assert!(
                !format!("{pair:?}").contains("PRIVATE"),
                "Debug hides the private key"
            );
        }
        assert_ne!(
            generate(Algorithm::Ed25519).unwrap(),
            generate(Algorithm::Ed25519).unwrap()
        );
    }

    #[test]
    fn names() {
        for name in Algorithm::NAMES {
            assert_eq!(name.parse::<Algorithm>().unwrap().as_str(), name);
        }
        assert_eq!("ECDSA".parse::<Algorithm>(), Ok(Algorithm::Ecdsa));
        assert!("rsa".parse::<Algorithm>().is_err());
    }
}
