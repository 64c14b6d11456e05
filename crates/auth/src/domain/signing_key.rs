//! A new access-token signing key (Ed25519), generated here and stored by
//! `store::signing_keys`; `keys` turns stored keys into signers and the JWKS.

use crate::error::Error;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ed25519_dalek::{pkcs8::EncodePrivateKey, SigningKey};
use rand::{rngs::OsRng, RngCore};

/// A freshly generated key pair, ready to be stored.
pub struct NewSigningKey {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
}

impl NewSigningKey {
    pub fn generate() -> Result<Self, Error> {
        let key = SigningKey::generate(&mut OsRng);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| Error::Internal(format!("encoding a new signing key: {e}")))?;
        let mut kid = [0u8; 16];
        OsRng.fill_bytes(&mut kid);
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(kid),
            private_pkcs8: der.as_bytes().to_vec(),
            public_key: key.verifying_key().to_bytes().to_vec(),
        })
    }
}
