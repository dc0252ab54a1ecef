//! Every random draw of a run, from its seed (`train.seed`), through generators written out here
//! so that they are bit-identical across builds, machines, thread counts and dependency upgrades.
//!
//! The algorithm: SplitMix64 (Steele, Lea, Flood 2014). A draw's generator is seeded with
//! `key([seed, purpose, words...])`, an order-sensitive fold of SplitMix64's finaliser, where
//! `purpose` names what the draw is for ([`Purpose`]) and `words` say which draw it is (an
//! epoch, a sample index, a hash of a parameter name). Every purpose is its own stream, as JAX's
//! `fold_in` makes one key per use: adding a draw to one purpose never shifts the others, and a
//! draw does not depend on which thread or worker makes it, or on what was drawn before it.
//! Normal values come from the Box-Muller transform over two 53-bit uniforms, in f64.

/// SplitMix64's finaliser: a strong 64-bit mix of one word.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One seed from several words, order-sensitive.
pub fn key(words: &[u64]) -> u64 {
    words.iter().fold(0x6a09_e667_f3bc_c908, |h, &w| {
        mix(h ^ mix(w.wrapping_add(0x9e37_79b9_7f4a_7c15)))
    })
}

/// What a random draw is for: each purpose is a separate stream of the run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Initial weights, one stream per parameter (keyed by its name).
    Init,
    /// The order in which an epoch visits the training set.
    DataOrder,
    /// The random crop and flip of each sample in each epoch.
    Augment,
    /// The training images held out for validation.
    Split,
}

impl Purpose {
    /// Fixed tags: changing one changes every run's draws of that purpose.
    fn tag(self) -> u64 {
        match self {
            Purpose::Init => 0x1a17,
            Purpose::DataOrder => 0x5f,
            Purpose::Augment => 0xa9,
            Purpose::Split => 0x5b1,
        }
    }
}

/// The generator of one draw of `purpose`, from the run's `seed` and the draw's coordinates.
pub fn stream(seed: u64, purpose: Purpose, words: &[u64]) -> Rng {
    let mut all = Vec::with_capacity(words.len() + 2);
    all.extend_from_slice(&[seed, purpose.tag()]);
    all.extend_from_slice(words);
    Rng::new(key(&all))
}

/// A 64-bit FNV-1a hash of a name (to key a stream by a parameter's name).
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our sizes).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Uniform in `[0, 1)`, 53 bits.
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `n` values of N(mean, std^2) as f32, by Box-Muller on pairs of uniforms.
    pub fn normals(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // 1 - u is in (0, 1]: its logarithm is finite.
            let r = (-2.0 * (1.0 - self.unit_f64()).ln()).sqrt();
            let theta = std::f64::consts::TAU * self.unit_f64();
            out.push((mean + std * r * theta.cos()) as f32);
            out.push((mean + std * r * theta.sin()) as f32);
        }
        out.truncate(n);
        out
    }

    /// `n` values uniform in `[lo, hi)` as f32.
    pub fn uniforms(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (hi - lo) * self.unit_f64()) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_is_its_own_stream_and_a_function_of_seed_and_coordinates_only() {
        let a = stream(7, Purpose::Init, &[3]).next_u64();
        assert_eq!(a, stream(7, Purpose::Init, &[3]).next_u64());
        assert_ne!(a, stream(8, Purpose::Init, &[3]).next_u64());
        assert_ne!(a, stream(7, Purpose::Augment, &[3]).next_u64());
        assert_ne!(a, stream(7, Purpose::Init, &[4]).next_u64());
    }

    #[test]
    fn normals_have_the_asked_mean_and_spread_and_are_pinned_across_builds() {
        let v = stream(1, Purpose::Init, &[name_hash("conv1.weight")]).normals(100_000, 0.0, 0.5);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "{}", var.sqrt());
        // The first draws, pinned: a change of algorithm changes every run's start.
        let first = stream(1, Purpose::Init, &[name_hash("conv1.weight")]).normals(3, 0.0, 1.0);
        assert_eq!(first, PINNED_NORMALS, "{first:?}");
    }

    const PINNED_NORMALS: [f32; 3] = [0.633_565_07, 2.502_601, 1.547_293_9];

    #[test]
    fn uniforms_stay_in_their_range() {
        let v = stream(2, Purpose::Init, &[1]).uniforms(10_000, -0.25, 0.25);
        assert!(v.iter().all(|&x| (-0.25..=0.25).contains(&x)));
    }
}
