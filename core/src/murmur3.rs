//! MurmurHash3 x86_32: the hash behind sticky cohorts.
//!
//! Chosen because other feature-flag and rollout tools (Unleash, among others) bucket users with it, so
//! a cohort computed here can be reproduced outside fledge. Checked against the SMHasher vectors.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Hashes `data` with `seed`. Allocation-free; runs once per request in the filter.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        // chunks_exact yields 4-byte blocks, so the conversion cannot fail.
        let Ok(word) = <[u8; 4]>::try_from(block) else { continue };
        h ^= mix_k(u32::from_le_bytes(word));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k: u32 = 0;
    for (i, byte) in tail.iter().enumerate() {
        k |= u32::from(*byte) << (8 * i);
    }
    if !tail.is_empty() {
        h ^= mix_k(k);
    }
    // The length is mixed in modulo 2^32 by definition of the algorithm.
    h ^= data.len() as u32;
    fmix32(h)
}

fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::murmur3_x86_32 as mm;

    // ../shared/reference/golden-vectors.md
    #[test]
    fn golden_vectors() {
        assert_eq!(mm(b"", 0), 0);
        assert_eq!(mm(b"", 1), 0x514E_28B7);
        assert_eq!(mm(b"", 0xFFFF_FFFF), 0x81F1_6F39);
        assert_eq!(mm(&[0, 0, 0, 0], 0), 0x2362_F9DE);
        assert_eq!(mm(b"aaaa", 0x9747_B28C), 0x5A97_808A);
        assert_eq!(mm(b"Hello, world!", 0x9747_B28C), 0x2488_4CBA);
        assert_eq!(mm(b"Hello, world!", 0), 0xC036_3E43);
        assert_eq!(
            mm(b"The quick brown fox jumps over the lazy dog", 0x9747_B28C),
            0x2FA8_26CD
        );
        assert_eq!(mm("€".as_bytes(), 0), 0x5B43_FCA5);
    }

    #[test]
    fn smhasher_verification_value() {
        let key: Vec<u8> = (0..=255u8).collect();
        let mut hashes = Vec::with_capacity(1024);
        for i in 0..256usize {
            let h = mm(&key[..i], 256 - i as u32);
            hashes.extend_from_slice(&h.to_le_bytes());
        }
        assert_eq!(mm(&hashes, 0), 0xB0F5_7EE3);
    }

    #[test]
    fn unleash_interop() {
        let norm = |group: &str, id: &str| mm(format!("{group}:{id}").as_bytes(), 0) % 100 + 1;
        assert_eq!(norm("gr1", "123"), 73);
        assert_eq!(norm("groupX", "999"), 25);
    }
}
