//! Client certificate subjects with several O attributes.
//!
//! Kubernetes reads a user's groups from the repeated O attributes of the subject, but
//! rcgen 0.14 keeps one value per attribute type (rcgen issue #81, open). So rcgen makes the
//! certificate with a CN-only subject, and here that subject is replaced by the full one and
//! the TBSCertificate re-signed with the CA key. The input is always rcgen's own DER, so the
//! TLV walker below only needs definite lengths; every step is checked all the same.

use rcgen::KeyPair;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::{Error, Result};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a]; // 2.5.4.10
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3

fn malformed() -> Error {
    Error::Crypto("re-sign client certificate: unexpected DER from rcgen")
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Splits the first TLV off `der`: (tag, content, rest).
fn split_tlv(der: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first().ok_or_else(malformed)?;
    let (&first, rest) = rest.split_first().ok_or_else(malformed)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(malformed());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(malformed());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// A DER Name: one single-valued RDN per O (in order), then the CN, as Go's x509 writes it.
pub(crate) fn name_der(common_name: &str, organizations: &[&str]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let atv = [tlv(OID, oid), tlv(UTF8_STRING, value.as_bytes())].concat();
        tlv(SET, &tlv(SEQUENCE, &atv))
    };
    let mut rdns: Vec<u8> = organizations
        .iter()
        .flat_map(|o| rdn(OID_ORGANIZATION, o))
        .collect();
    rdns.extend(rdn(OID_COMMON_NAME, common_name));
    tlv(SEQUENCE, &rdns)
}

/// `cert` with its subject replaced by `subject` (a DER Name), re-signed by `ca_key`.
pub(crate) fn replace_subject(cert: &[u8], subject: &[u8], ca_key: &KeyPair) -> Result<Vec<u8>> {
    let (tag, outer, _) = split_tlv(cert)?;
    if tag != SEQUENCE {
        return Err(malformed());
    }
    let (tag, tbs, after_tbs) = split_tlv(outer)?;
    if tag != SEQUENCE {
        return Err(malformed());
    }
    let (_, _, after_alg) = split_tlv(after_tbs)?;
    let signature_algorithm = &after_tbs[..after_tbs.len() - after_alg.len()];

    // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
    let (version, _, mut rest) = split_tlv(tbs)?;
    if version != 0xa0 {
        return Err(malformed()); // rcgen always writes v3 certificates
    }
    for _ in 0..4 {
        rest = split_tlv(rest)?.2;
    }
    let before_subject = &tbs[..tbs.len() - rest.len()];
    let (tag, _, after_subject) = split_tlv(rest)?;
    if tag != SEQUENCE {
        return Err(malformed());
    }
    let new_tbs = tlv(SEQUENCE, &[before_subject, subject, after_subject].concat());

    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        ca_key.serialized_der(),
        &SystemRandom::new(),
    )
    .map_err(|_| Error::Crypto("re-sign client certificate: CA key is not ECDSA P-256"))?;
    let signature = signer
        .sign(&SystemRandom::new(), &new_tbs)
        .map_err(|_| Error::Crypto("re-sign client certificate"))?;
    let bits = [&[0u8][..], signature.as_ref()].concat(); // no unused bits
    Ok(tlv(
        SEQUENCE,
        &[&new_tbs[..], signature_algorithm, &tlv(BIT_STRING, &bits)].concat(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_lengths_roundtrip() {
        for len in [0, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let der = tlv(SEQUENCE, &content);
            let (tag, got, rest) = split_tlv(&der).unwrap();
            assert_eq!((tag, got.len(), rest.len()), (SEQUENCE, len, 0));
        }
        assert!(split_tlv(&[0x30, 0x05, 1, 2]).is_err());
        assert!(split_tlv(&[0x30, 0x80]).is_err());
        assert!(split_tlv(&[]).is_err());
    }
}
