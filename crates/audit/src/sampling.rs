//! Sample sizes and seeded, reproducible sample selection for control tests.
//!
//! **Sizes.** A control that operates on a calendar (annual, quarterly, monthly, weekly,
//! daily, several times a day) is sampled by the practitioners' table: annual 1, quarterly
//! 2, monthly 2–5, weekly 5–15, daily 20–40, several times a day 25–60, taking the upper end
//! of a range for a control at higher risk. A firm may set its own ranges. A per-change
//! control may instead be sampled statistically (attribute sampling): the smallest size at
//! which, if the true deviation rate were the tolerable rate, finding no more than the
//! expected number of deviations would be unlikely (at most `1 - confidence`), by the
//! binomial distribution. When the population is smaller than the size, the whole
//! population is tested.
//!
//! **Selection.** Every item of a population gets a rank: the SHA-256 of
//! `changegate-sample-v1`, the seed in decimal, the control id and the item id, each
//! followed by a zero byte. The sample is the `n` items of lowest rank (ties, which
//! SHA-256 makes practically impossible, go to the lower item id), listed in rank order.
//! Anyone with the seed, the control id and the item ids can redraw it, with any tool that
//! computes SHA-256, and the draw does not depend on the order the population was listed
//! in. Adding an item to a population changes the sample only if the new item ranks among
//! the first `n`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name and version of the draw, the first input of every rank.
pub const ALGORITHM: &str = "changegate-sample-v1";

/// How often a control operates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Annual,
    Quarterly,
    Monthly,
    Weekly,
    Daily,
    MultipleTimesADay,
    /// Once for each change: the population is the changes themselves.
    PerChange,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Annual => "annual",
            Frequency::Quarterly => "quarterly",
            Frequency::Monthly => "monthly",
            Frequency::Weekly => "weekly",
            Frequency::Daily => "daily",
            Frequency::MultipleTimesADay => "multiple_times_a_day",
            Frequency::PerChange => "per_change",
        }
    }
}

/// The risk the control addresses, which picks the end of a size range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    #[default]
    Lower,
    Higher,
}

/// An inclusive range of sample sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub low: u64,
    pub high: u64,
}

/// A firm's sample-size table by frequency. `per_change` is the range used for per-change
/// controls when no attribute-sampling plan is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizeTable {
    pub annual: Range,
    pub quarterly: Range,
    pub monthly: Range,
    pub weekly: Range,
    pub daily: Range,
    pub multiple_times_a_day: Range,
    pub per_change: Range,
}

impl Default for SizeTable {
    fn default() -> Self {
        let r = |low, high| Range { low, high };
        SizeTable {
            annual: r(1, 1),
            quarterly: r(2, 2),
            monthly: r(2, 5),
            weekly: r(5, 15),
            daily: r(20, 40),
            multiple_times_a_day: r(25, 60),
            per_change: r(25, 60),
        }
    }
}

impl SizeTable {
    pub fn range(&self, frequency: Frequency) -> Range {
        match frequency {
            Frequency::Annual => self.annual,
            Frequency::Quarterly => self.quarterly,
            Frequency::Monthly => self.monthly,
            Frequency::Weekly => self.weekly,
            Frequency::Daily => self.daily,
            Frequency::MultipleTimesADay => self.multiple_times_a_day,
            Frequency::PerChange => self.per_change,
        }
    }

    /// Refuses ranges that are empty or upside down, naming the frequency.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let all = [
            Frequency::Annual,
            Frequency::Quarterly,
            Frequency::Monthly,
            Frequency::Weekly,
            Frequency::Daily,
            Frequency::MultipleTimesADay,
            Frequency::PerChange,
        ];
        for f in all {
            let r = self.range(f);
            if r.low == 0 || r.high < r.low {
                return Err(SamplingError::Table(format!(
                    "`{}` must be a range of at least 1 with low ≤ high, not {}–{}",
                    f.as_str(),
                    r.low,
                    r.high
                )));
            }
        }
        Ok(())
    }
}

/// A statistical attribute-sampling plan, rates as fractions (0.05 for 5 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributePlan {
    /// The confidence wanted that the deviation rate is below the tolerable rate, e.g. 0.95.
    pub confidence: f64,
    /// The highest deviation rate at which the control still counts as effective.
    pub tolerable: f64,
    /// The deviation rate expected in the population.
    pub expected: f64,
}

/// A firm's sampling settings: its size table, the deviation rate above which a control
/// is deficient, the controls it judges at higher risk and its attribute-sampling plans.
/// Read from the `[sampling]` file an engagement is given; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// The deviation rate above which a control's exceptions make it deficient, unless
    /// its attribute plan sets one.
    pub tolerable_rate: f64,
    /// Controls at higher risk: the upper end of their size range.
    pub higher_risk: Vec<String>,
    pub sizes: SizeTable,
    /// Attribute-sampling plans of per-change controls, by control id.
    pub attribute_sampling: std::collections::BTreeMap<String, AttributePlan>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            tolerable_rate: 0.05,
            higher_risk: Vec::new(),
            sizes: SizeTable::default(),
            attribute_sampling: Default::default(),
        }
    }
}

impl Sampling {
    /// Refuses settings no engagement could use: a rate outside (0, 1), an empty or upside
    /// down size range, an impossible plan, or a control `known` does not accept (an
    /// unknown id, or a plan for a control that is not per change), naming the setting.
    pub fn validate(&self, known: impl Fn(&str) -> Option<Frequency>) -> Result<(), SamplingError> {
        if !(self.tolerable_rate > 0.0 && self.tolerable_rate < 1.0) {
            return Err(SamplingError::Table(format!(
                "`tolerable_rate` must be a fraction between 0 and 1, not {}",
                self.tolerable_rate
            )));
        }
        self.sizes.validate()?;
        for id in &self.higher_risk {
            if known(id).is_none() {
                return Err(SamplingError::Table(format!(
                    "`higher_risk` names `{id}`, which is no control"
                )));
            }
        }
        for (id, plan) in &self.attribute_sampling {
            match known(id) {
                None => {
                    return Err(SamplingError::Plan(format!(
                        "`attribute_sampling.{id}`: no control `{id}`"
                    )))
                }
                Some(Frequency::PerChange) => {}
                Some(f) => {
                    return Err(SamplingError::Plan(format!(
                        "`attribute_sampling.{id}`: `{id}` has the frequency `{}`, not \
                         per change; its sample follows its frequency",
                        f.as_str()
                    )))
                }
            }
            attribute_size(plan).map_err(|e| match e {
                SamplingError::Plan(m) => {
                    SamplingError::Plan(format!("`attribute_sampling.{id}`: {m}"))
                }
                other => other,
            })?;
        }
        Ok(())
    }
}

/// How a sample size was reached, for the workpapers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleSize {
    /// Items to test.
    pub size: u64,
    /// The size before it was capped by the population.
    pub planned: u64,
    /// How `planned` was reached, in words.
    pub basis: String,
    /// The whole population is tested.
    pub whole_population: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplingError {
    #[error("sample-size table: {0}")]
    Table(String),
    #[error("attribute-sampling plan: {0}")]
    Plan(String),
    #[error("the population lists `{0}` more than once")]
    DuplicateItem(String),
}

/// The largest size an attribute plan may call for; past it the plan is refused as
/// impractical rather than searched for longer.
const MAX_ATTRIBUTE_SIZE: u64 = 100_000;

/// The sample size for a control of this frequency and risk over a population of
/// `population` items, by the table or, for a per-change control with a plan, by attribute
/// sampling.
pub fn sample_size(
    frequency: Frequency,
    risk: RiskLevel,
    population: u64,
    table: &SizeTable,
    plan: Option<&AttributePlan>,
) -> Result<SampleSize, SamplingError> {
    table.validate()?;
    let (planned, basis) = match (frequency, plan) {
        (Frequency::PerChange, Some(plan)) => {
            let n = attribute_size(plan)?;
            let basis = format!(
                "attribute sampling: {:.0} % confidence, tolerable deviation {}, expected {} \
                 ({} deviation(s) allowed)",
                plan.confidence * 100.0,
                percent(plan.tolerable),
                percent(plan.expected),
                allowed_deviations(n, plan.expected)
            );
            (n, basis)
        }
        _ => {
            let r = table.range(frequency);
            let (n, end) = match risk {
                RiskLevel::Lower => (r.low, "lower"),
                RiskLevel::Higher => (r.high, "upper"),
            };
            let basis = if r.low == r.high {
                format!("{} control: {n}", frequency.as_str())
            } else {
                format!(
                    "{} control: {}–{}, the {end} end for {} risk",
                    frequency.as_str(),
                    r.low,
                    r.high,
                    if risk == RiskLevel::Higher {
                        "higher"
                    } else {
                        "lower"
                    }
                )
            };
            (n, basis)
        }
    };
    let whole_population = population <= planned;
    Ok(SampleSize {
        size: planned.min(population),
        planned,
        basis,
        whole_population,
    })
}

fn percent(rate: f64) -> String {
    format!("{} %", (rate * 10_000.0).round() / 100.0)
}

/// The deviations a sample of `n` may show and still support the plan: the expected
/// number, rounded up.
pub fn allowed_deviations(n: u64, expected: f64) -> u64 {
    let k = n as f64 * expected;
    // A product that is an integer but for floating-point noise is that integer.
    let rounded = k.round();
    if (k - rounded).abs() < 1e-9 {
        rounded as u64
    } else {
        k.ceil() as u64
    }
}

/// The smallest `n` with P(at most `allowed_deviations(n)` deviations | n, tolerable)
/// ≤ 1 − confidence.
pub fn attribute_size(plan: &AttributePlan) -> Result<u64, SamplingError> {
    let AttributePlan {
        confidence,
        tolerable,
        expected,
    } = *plan;
    let ok = |x: f64| x.is_finite() && x > 0.0 && x < 1.0;
    if !ok(confidence) {
        return Err(SamplingError::Plan(format!(
            "`confidence` must be between 0 and 1 (exclusive), not {confidence}"
        )));
    }
    if !ok(tolerable) {
        return Err(SamplingError::Plan(format!(
            "`tolerable` must be between 0 and 1 (exclusive), not {tolerable}"
        )));
    }
    if !(expected.is_finite() && (0.0..tolerable).contains(&expected)) {
        return Err(SamplingError::Plan(format!(
            "`expected` must be at least 0 and below `tolerable` ({tolerable}), not {expected}"
        )));
    }
    let risk = 1.0 - confidence;
    for n in 1..=MAX_ATTRIBUTE_SIZE {
        let k = allowed_deviations(n, expected);
        if binomial_cdf(k, n, tolerable) <= risk {
            return Ok(n);
        }
    }
    Err(SamplingError::Plan(format!(
        "no sample of up to {MAX_ATTRIBUTE_SIZE} items supports this plan: the expected \
         deviation rate is too close to the tolerable one"
    )))
}

/// P(X ≤ k) for X ~ Binomial(n, p), summed in log space so that large `n` neither
/// overflows nor underflows to nothing.
fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = 0.0f64; // ln C(n, 0)
    let mut total = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        total += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    total.min(1.0)
}

/// One drawn item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drawn {
    pub item: String,
    /// The item's rank, hex: anyone can recompute it.
    pub rank: String,
}

/// The rank of an item in the draw for `control` with `seed`.
pub fn rank(seed: u64, control: &str, item: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        ALGORITHM.as_bytes(),
        seed.to_string().as_bytes(),
        control.as_bytes(),
        item.as_bytes(),
    ] {
        h.update(part);
        h.update([0u8]);
    }
    h.finalize().into()
}

/// Draws `n` items of `population` for `control` with `seed` (see the module
/// documentation). Item ids must be unique.
pub fn draw(
    seed: u64,
    control: &str,
    population: &[String],
    n: u64,
) -> Result<Vec<Drawn>, SamplingError> {
    Ok(draw_indices(seed, control, population, n)?
        .into_iter()
        .map(|(i, r)| Drawn {
            item: population[i].clone(),
            rank: hex::encode(r),
        })
        .collect())
}

/// As [`draw`], giving each drawn item's index in `population` and its rank.
pub fn draw_indices<S: AsRef<str>>(
    seed: u64,
    control: &str,
    population: &[S],
    n: u64,
) -> Result<Vec<(usize, [u8; 32])>, SamplingError> {
    let id = |i: usize| population[i].as_ref();
    let mut seen = std::collections::HashSet::with_capacity(population.len());
    for item in population {
        if !seen.insert(item.as_ref()) {
            return Err(SamplingError::DuplicateItem(item.as_ref().to_string()));
        }
    }
    drop(seen);
    let mut ranked: Vec<([u8; 32], usize)> = population
        .iter()
        .enumerate()
        .map(|(i, item)| (rank(seed, control, item.as_ref()), i))
        .collect();
    let n = usize::try_from(n).unwrap_or(usize::MAX).min(ranked.len());
    if n < ranked.len() {
        // Ties (practically impossible) go to the lower item id.
        ranked.select_nth_unstable_by(n, |a, b| a.0.cmp(&b.0).then_with(|| id(a.1).cmp(id(b.1))));
        ranked.truncate(n);
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| id(a.1).cmp(id(b.1))));
    Ok(ranked.into_iter().map(|(r, i)| (i, r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_sums_match_closed_forms() {
        assert!((binomial_cdf(0, 10, 0.5) - 0.5f64.powi(10)).abs() < 1e-12);
        assert!((binomial_cdf(10, 10, 0.3) - 1.0).abs() < 1e-9);
        let one = 0.95f64.powi(93) + 93.0 * 0.05 * 0.95f64.powi(92);
        assert!((binomial_cdf(1, 93, 0.05) - one).abs() < 1e-12);
    }
}
