//! What the integration tests share (each tests/*.rs file is its own crate and includes this module).

/// Tiny deterministic generator (64-bit LCG), values in [-1, 1) (`vec`: in [-scale, scale)).
pub struct Lcg(pub u64);

#[allow(dead_code)] // not every test uses every method
impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.next() * scale).collect()
    }
}

/// Fails unless `r` is an error with `status` whose message mentions `mentions`.
#[allow(dead_code)] // not every test uses it
pub fn assert_error<T: std::fmt::Debug>(
    r: winattn::Result<T>,
    status: winattn::Status,
    mentions: &str,
) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.status, status, "{e}");
    assert!(
        e.message.contains(mentions),
        "message {:?} does not mention {mentions:?}",
        e.message
    );
}
