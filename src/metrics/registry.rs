//! The metric types: counters, gauges and histograms, each kept in a [`Family`] of series with
//! fixed label names. An increment is a lookup of its label values under a read lock (a short
//! linear scan of borrowed strings, no allocation) and one atomic add; a series is allocated once,
//! the first time its label values are seen. A family holds at most [`MAX_SERIES`] series, so a
//! label value that is not one of a small fixed set (a bug, or an HTTP status nobody expected) can
//! never grow memory or the scrape: past the cap, new values are counted under `other`.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    RwLock,
};

use super::text;

/// Series per family at most; beyond it, new label values fold into `other`.
pub const MAX_SERIES: usize = 64;
/// The label value series past [`MAX_SERIES`] are counted under.
pub const OVERFLOW: &str = "other";

/// Only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down; set at scrape time or by its owner.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A counter whose total is kept elsewhere (the supervisor's restarts, the kernel's CPU time)
/// and copied in at scrape time.
#[derive(Debug, Default)]
pub struct Mirrored(Gauge);

impl Mirrored {
    pub fn set(&self, total: f64) {
        self.0.set(total);
    }
}

/// Observations counted into fixed buckets (upper bounds, ascending), with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() { v } else { 0.0 };
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self
                .sum
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(seen) => cur = seen,
            }
        }
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` last; then the sum.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64) {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            out.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        (out, f64::from_bits(self.sum.load(Ordering::Relaxed)))
    }
}

/// What a family holds, and how its series are written.
pub trait Series: Send + Sync {
    const TYPE: &'static str;
    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]);
}

impl Series for Counter {
    const TYPE: &'static str = "counter";
    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        text::sample(out, name, "", labels, None, self.get() as f64);
    }
}

impl Series for Gauge {
    const TYPE: &'static str = "gauge";
    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        text::sample(out, name, "", labels, None, self.get());
    }
}

impl Series for Mirrored {
    const TYPE: &'static str = "counter";
    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        text::sample(out, name, "", labels, None, self.0.get());
    }
}

impl Series for Histogram {
    const TYPE: &'static str = "histogram";
    fn write(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let (buckets, sum) = self.snapshot();
        let count = buckets.last().map_or(0, |b| b.1);
        for (le, n) in buckets {
            text::sample(out, name, "_bucket", labels, Some(le), n as f64);
        }
        text::sample(out, name, "_sum", labels, None, sum);
        text::sample(out, name, "_count", labels, None, count as f64);
    }
}

/// One metric: its name, help, label names and series.
pub struct Family<M> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    make: Box<dyn Fn() -> M + Send + Sync>,
    series: RwLock<Vec<(Box<[String]>, M)>>,
}

impl<M: Series> Family<M> {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Family<M> {
        // A metric without labels has its one series from the start: 0 is a value worth
        // scraping (a rate over it works from the first scrape on).
        let series = if labels.is_empty() {
            vec![(Box::default(), make())]
        } else {
            Vec::new()
        };
        Family {
            name,
            help,
            labels,
            make: Box::new(make),
            series: RwLock::new(series),
        }
    }

    /// Runs `f` on the series of `values` (one per label name, in order), created on first use.
    pub fn at<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        {
            let series = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, m)) = series.iter().find(|(k, _)| same(k, values)) {
                return f(m);
            }
        }
        let mut series = self.series.write().unwrap_or_else(|p| p.into_inner());
        let key: Box<[String]> = if series.len() < MAX_SERIES {
            values.iter().map(|v| (*v).to_owned()).collect()
        } else {
            values.iter().map(|_| OVERFLOW.to_owned()).collect()
        };
        let at = match series.iter().position(|(k, _)| **k == *key) {
            Some(i) => i,
            None => {
                series.push((key, (self.make)()));
                series.len() - 1
            }
        };
        f(&series[at].1)
    }

    /// `# HELP`, `# TYPE` and every series, in the order they were first used.
    pub fn render(&self, out: &mut String) {
        text::header(out, self.name, self.help, M::TYPE);
        let series = self.series.read().unwrap_or_else(|p| p.into_inner());
        for (values, m) in series.iter() {
            let pairs: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            m.write(out, self.name, &pairs);
        }
    }
}

fn same(key: &[String], values: &[&str]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(k, v)| k == v)
}

impl Family<Counter> {
    pub fn inc(&self, values: &[&str]) {
        self.at(values, Counter::inc);
    }

    pub fn add(&self, values: &[&str], n: u64) {
        self.at(values, |c| c.add(n));
    }

    /// The current count of `values` (tests).
    pub fn get(&self, values: &[&str]) -> u64 {
        self.at(values, Counter::get)
    }
}

impl Family<Gauge> {
    pub fn set(&self, values: &[&str], v: f64) {
        self.at(values, |g| g.set(v));
    }
}

impl Family<Mirrored> {
    pub fn set(&self, values: &[&str], total: f64) {
        self.at(values, |m| m.set(total));
    }
}

impl Family<Histogram> {
    pub fn observe(&self, values: &[&str], v: f64) {
        self.at(values, |h| h.observe(v));
    }
}

/// Anything the exposition writes, whatever its type.
pub trait Render: Send + Sync {
    fn render(&self, out: &mut String);
}

impl<M: Series> Render for Family<M> {
    fn render(&self, out: &mut String) {
        Family::render(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_an_inf_bucket() {
        static B: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(B);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        let (buckets, sum) = h.snapshot();
        // 0.1 lands in le="0.1" (upper bounds are inclusive); NaN counts as 0.
        assert_eq!(buckets, vec![(0.1, 3), (1.0, 4), (f64::INFINITY, 5)]);
        assert!((sum - 3.65).abs() < 1e-9);
    }

    #[test]
    fn a_family_caps_its_series_and_folds_the_rest_into_other() {
        let f = Family::new("t_total", "t", &["code"], Counter::default);
        for i in 0..MAX_SERIES + 10 {
            f.inc(&[&i.to_string()]);
        }
        assert_eq!(f.get(&["0"]), 1);
        assert_eq!(f.series.read().unwrap().len(), MAX_SERIES + 1);
        assert_eq!(f.get(&[OVERFLOW]), 10);
    }

    #[test]
    fn concurrent_increments_are_all_counted() {
        let f = std::sync::Arc::new(Family::new("c_total", "c", &["k"], Counter::default));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        f.inc(&[if t % 2 == 0 { "a" } else { "b" }]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(f.get(&["a"]) + f.get(&["b"]), 40_000);
    }
}
