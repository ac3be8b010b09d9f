//! Sealing what idlink keeps at rest on a caller's behalf with a key only that caller holds.
//!
//! A pending flow is stored under the hash of its `state`; its PKCE verifier and nonce are
//! sealed with a key derived from the `state` itself. A remembered answer of an idempotent
//! request is stored under the hash of its request id and sealed with a key derived from the
//! id. Neither `state` nor request id is ever at rest, so whoever reads the store (a backup, a
//! Redis `DUMP`, sled's log files) finds no state, verifier, nonce or answer to replay.
//!
//! ChaCha20-Poly1305 (ring, already linked for TLS), key = HMAC-SHA256(secret, purpose),
//! a fresh random nonce per seal, the purpose as associated data.

use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("sealed data is unreadable with this key")]
pub struct Unreadable;

fn key(secret: &[u8], purpose: &str) -> Result<LessSafeKey, Unreadable> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| Unreadable)?;
    mac.update(b"idlink seal v1\0");
    mac.update(purpose.as_bytes());
    let derived = mac.finalize().into_bytes();
    Ok(LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &derived).map_err(|_| Unreadable)?))
}

/// `nonce ‖ ciphertext ‖ tag` of `plaintext` under a key derived from `secret` and `purpose`.
pub fn seal(secret: &[u8], purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, Unreadable> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut sealed = plaintext.to_vec();
    key(secret, purpose)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut sealed)
        .map_err(|_| Unreadable)?;
    Ok([&nonce[..], &sealed].concat())
}

/// The plaintext of [`seal`]ed bytes, when `secret` and `purpose` are the ones it was sealed with.
pub fn open(secret: &[u8], purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, Unreadable> {
    if sealed.len() < NONCE_LEN {
        return Err(Unreadable);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unreadable)?;
    let mut body = body.to_vec();
    let plaintext = key(secret, purpose)?.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut body).map_err(|_| Unreadable)?;
    Ok(plaintext.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_and_purpose_it_was_sealed_with_open_it() {
        let sealed = seal(b"the state", "flow", b"verifier and nonce").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"verifier"), "the plaintext is not in the sealed bytes");
        assert_eq!(open(b"the state", "flow", &sealed).unwrap(), b"verifier and nonce");
        assert_eq!(open(b"another state", "flow", &sealed), Err(Unreadable));
        assert_eq!(open(b"the state", "answer", &sealed), Err(Unreadable));
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(open(b"the state", "flow", &tampered), Err(Unreadable));
        assert_eq!(open(b"the state", "flow", &sealed[..5]), Err(Unreadable));
        assert_ne!(seal(b"the state", "flow", b"x").unwrap(), seal(b"the state", "flow", b"x").unwrap(), "a fresh nonce each time");
    }
}
