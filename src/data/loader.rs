//! The training input pipeline: which images each batch holds, and worker threads that
//! decode, augment and standardise them ahead of the training loop.
//!
//! - [`split_dataset`]: the optional validation split (by images within each class, as the
//!   reference's classifier training does; or by classes).
//! - [`IndexStream`]: an endless stream of shuffled indices over the training images (one
//!   fresh permutation per pass, as TF's `range_input_producer(shuffle=True)`); an epoch
//!   takes `epoch_size * batch_size` indices from it. Its position is two integers, so a
//!   checkpoint can store it and a resumed run continues the same stream.
//! - [`BatchLoader`]: `threads` workers each build whole batches (worker `w` builds batches
//!   `w, w + threads, ...`) and hand them over through a bounded channel, so up to about
//!   `2 * threads` batches are prepared while the network trains, and batches arrive in order.
//!   Augmentation randomness is derived from the run's seed and the sample's serial number
//!   ([`crate::data::augment::sample_rng`]), so the batches do not depend on thread timing.
//! - [`BadImages`]: an image that cannot be decoded is reported once and left out of its
//!   batch (and of every later one); training goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{mix64, sample_rng, Augment};
use super::dataset::ImageClass;
use super::image_io::load_rgb;
use super::preprocess::{standardize_into, Standardization};

/// How a validation set is split off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMode {
    /// A fraction of each class's images (the reference's `SPLIT_IMAGES`).
    Images,
    /// A fraction of the classes (the reference's `SPLIT_CLASSES`).
    Classes,
}

/// Splits `classes` into (training, validation) sets.
///
/// `Images`: each class's images are shuffled; the first `floor(n * (1 - ratio))` train (at
/// most `n - 1`), the rest validate; a class whose training part is smaller than
/// `min_nrof_val_images_per_class` is left out of both sets (as in the reference).
/// `Classes`: the classes are shuffled; the first `round(n * (1 - ratio))` train.
/// `ratio <= 0` puts everything in training.
pub fn split_dataset(
    classes: &[ImageClass],
    ratio: f64,
    min_nrof_val_images_per_class: f64,
    mode: SplitMode,
    seed: u64,
) -> (Vec<ImageClass>, Vec<ImageClass>) {
    if ratio <= 0.0 {
        return (classes.to_vec(), Vec::new());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(seed ^ 0x7370_6C69_7421));
    match mode {
        SplitMode::Images => {
            let mut train = Vec::new();
            let mut val = Vec::new();
            for c in classes {
                let mut paths = c.image_paths.clone();
                paths.shuffle(&mut rng);
                let n = paths.len();
                let mut split = (n as f64 * (1.0 - ratio)).floor() as usize;
                if split == n {
                    split = n.saturating_sub(1);
                }
                if split as f64 >= min_nrof_val_images_per_class && n - split >= 1 && split > 0 {
                    let rest = paths.split_off(split);
                    train.push(ImageClass { name: c.name.clone(), image_paths: paths });
                    val.push(ImageClass { name: c.name.clone(), image_paths: rest });
                }
            }
            (train, val)
        }
        SplitMode::Classes => {
            let mut order: Vec<usize> = (0..classes.len()).collect();
            order.shuffle(&mut rng);
            let split = (classes.len() as f64 * (1.0 - ratio)).round() as usize;
            let train = order[..split].iter().map(|&i| classes[i].clone()).collect();
            let val = order[split..].iter().map(|&i| classes[i].clone()).collect();
            (train, val)
        }
    }
}

/// Image paths and labels of `classes` (label = index in `classes`).
pub fn paths_and_labels(classes: &[ImageClass]) -> (Vec<PathBuf>, Vec<usize>) {
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (label, c) in classes.iter().enumerate() {
        for p in &c.image_paths {
            paths.push(p.clone());
            labels.push(label);
        }
    }
    (paths, labels)
}

/// An endless stream of indices `0..n`, one seeded permutation per pass.
#[derive(Clone, Debug)]
pub struct IndexStream {
    n: usize,
    seed: u64,
    pass: u64,
    pos: usize,
    perm: Vec<usize>,
}

impl IndexStream {
    /// The stream over `n` items (n >= 1) for `seed`, at its start.
    pub fn new(n: usize, seed: u64) -> Self {
        Self::from_state(n, seed, 0, 0)
    }

    /// The stream at `(pass, pos)` (see [`state`](Self::state)).
    pub fn from_state(n: usize, seed: u64, pass: u64, pos: usize) -> Self {
        assert!(n > 0, "an index stream needs at least one item");
        let perm = permutation(n, seed, pass);
        IndexStream { n, seed, pass, pos: pos.min(n), perm }
    }

    /// `(pass, position in that pass's permutation)`.
    pub fn state(&self) -> (u64, usize) {
        (self.pass, self.pos)
    }

    /// The next `k` indices.
    pub fn take(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            if self.pos == self.n {
                self.pass += 1;
                self.pos = 0;
                self.perm = permutation(self.n, self.seed, self.pass);
            }
            let m = (k - out.len()).min(self.n - self.pos);
            out.extend_from_slice(&self.perm[self.pos..self.pos + m]);
            self.pos += m;
        }
        out
    }
}

fn permutation(n: usize, seed: u64, pass: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(pass ^ 0x696E_6465_7821)));
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut rng);
    v
}

/// Images that failed to decode: each is reported once (stderr) and skipped from then on.
#[derive(Debug, Default)]
pub struct BadImages {
    seen: Mutex<BTreeMap<PathBuf, String>>,
}

impl BadImages {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `path` is known to be unreadable.
    pub fn contains(&self, path: &Path) -> bool {
        self.seen.lock().map(|s| s.contains_key(path)).unwrap_or(false)
    }

    /// Records a failure; prints it the first time.
    pub fn report(&self, path: &Path, reason: &str) {
        if let Ok(mut s) = self.seen.lock() {
            if !s.contains_key(path) {
                eprintln!("warning: {reason}; this image is skipped for the rest of the run");
                s.insert(path.to_path_buf(), reason.to_string());
            }
        }
    }

    /// Number of distinct unreadable images so far.
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How samples become network input.
#[derive(Clone, Copy, Debug)]
pub struct LoaderConfig {
    pub augment: Augment,
    pub standardization: Standardization,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// The run's seed (augmentation randomness).
    pub seed: u64,
}

/// What one batch holds: indices into the sample list and the serial number of its first
/// sample (sample `i` of the batch draws its augmentation from `sample_rng(seed, first_serial + i)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub samples: Vec<usize>,
    pub first_serial: u64,
}

/// A prepared batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Position of the batch in its plan list.
    pub number: usize,
    /// `[len, 3, size, size]` floats, standardised.
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    /// Samples left out because their image cannot be decoded.
    pub skipped: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Builds one batch on the calling thread.
pub fn build_batch(number: usize, plan: &BatchPlan, paths: &[PathBuf], labels: &[usize], cfg: &LoaderConfig, bad: &BadImages) -> Batch {
    let size = cfg.augment.image_size as usize;
    let per = 3 * size * size;
    let mut images = vec![0f32; plan.samples.len() * per];
    let mut out_labels = Vec::with_capacity(plan.samples.len());
    let mut skipped = 0;
    for (i, &s) in plan.samples.iter().enumerate() {
        let path = &paths[s];
        if bad.contains(path) {
            skipped += 1;
            continue;
        }
        let img = match load_rgb(path) {
            Ok(img) => img,
            Err(e) => {
                bad.report(path, &e.to_string());
                skipped += 1;
                continue;
            }
        };
        let mut rng = sample_rng(cfg.seed, plan.first_serial + i as u64);
        let aug = cfg.augment.apply(&img, &mut rng);
        let k = out_labels.len();
        standardize_into(&aug, cfg.standardization, &mut images[k * per..(k + 1) * per]);
        out_labels.push(labels[s] as i64);
    }
    images.truncate(out_labels.len() * per);
    Batch { number, images, labels: out_labels, skipped }
}

/// Batches prepared ahead by worker threads, yielded in plan order.
pub struct BatchLoader {
    receivers: Vec<Receiver<Batch>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
}

impl BatchLoader {
    /// Starts the workers on `plans` over the samples `paths`/`labels`.
    pub fn start(paths: Arc<Vec<PathBuf>>, labels: Arc<Vec<usize>>, plans: Vec<BatchPlan>, cfg: LoaderConfig, bad: Arc<BadImages>) -> Self {
        let threads = cfg.threads.max(1).min(plans.len().max(1));
        let total = plans.len();
        let mut per_worker: Vec<Vec<(usize, BatchPlan)>> = vec![Vec::new(); threads];
        for (i, p) in plans.into_iter().enumerate() {
            per_worker[i % threads].push((i, p));
        }
        let mut receivers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (w, work) in per_worker.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Batch>(1);
            let (paths, labels, bad) = (paths.clone(), labels.clone(), bad.clone());
            let handle = std::thread::Builder::new()
                .name(format!("facenet-loader-{w}"))
                .spawn(move || {
                    for (number, plan) in work {
                        let batch = build_batch(number, &plan, &paths, &labels, &cfg, &bad);
                        if tx.send(batch).is_err() {
                            return; // the consumer stopped early
                        }
                    }
                })
                .expect("cannot start a data loader thread");
            receivers.push(rx);
            handles.push(handle);
        }
        BatchLoader { receivers, handles, next: 0, total }
    }

    /// Number of batches this loader yields.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for BatchLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        let batch = rx.recv().ok()?;
        self.next += 1;
        Some(batch)
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.receivers.clear(); // unblocks workers waiting to send
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Consecutive batch plans over `indices` (the last may be shorter), numbering samples from
/// `first_serial`.
pub fn plans_from_indices(indices: &[usize], batch_size: usize, first_serial: u64) -> Vec<BatchPlan> {
    indices
        .chunks(batch_size.max(1))
        .enumerate()
        .map(|(b, chunk)| BatchPlan { samples: chunk.to_vec(), first_serial: first_serial + (b * batch_size) as u64 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn write_images(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("img{i}.png"));
                RgbImage::from_fn(12, 12, |x, y| Rgb([(x * 20) as u8, (y * 20) as u8, (i * 30) as u8])).save(&p).unwrap();
                p
            })
            .collect()
    }

    fn cfg(threads: usize) -> LoaderConfig {
        LoaderConfig {
            augment: Augment { image_size: 8, random_rotate: true, random_crop: true, random_flip: true },
            standardization: Standardization::Fixed,
            threads,
            seed: 5,
        }
    }

    #[test]
    fn index_stream_is_a_sequence_of_permutations_and_resumes() {
        let mut s = IndexStream::new(5, 1);
        let a = s.take(12);
        let mut first: Vec<usize> = a[..5].to_vec();
        first.sort();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let mut second: Vec<usize> = a[5..10].to_vec();
        second.sort();
        assert_eq!(second, vec![0, 1, 2, 3, 4]);
        assert_ne!(a[..5], a[5..10], "passes use different permutations");
        let (pass, pos) = s.state();
        assert_eq!((pass, pos), (2, 2));
        let rest = s.take(7);
        let mut r = IndexStream::from_state(5, 1, pass, pos);
        assert_eq!(r.take(7), rest);
        let mut whole = IndexStream::new(5, 1);
        assert_eq!(whole.take(19), [a, rest].concat());
    }

    #[test]
    fn loader_yields_in_order_and_deterministically() {
        let d = tempfile::tempdir().unwrap();
        let paths = Arc::new(write_images(d.path(), 6));
        let labels = Arc::new(vec![0, 0, 1, 1, 2, 2]);
        let plans = plans_from_indices(&[5, 4, 3, 2, 1, 0, 1, 2, 3], 2, 100);
        assert_eq!(plans.len(), 5);
        assert_eq!(plans[4].samples, vec![3]);
        assert_eq!(plans[1].first_serial, 102);
        let run = |threads| {
            BatchLoader::start(paths.clone(), labels.clone(), plans.clone(), cfg(threads), Arc::new(BadImages::new())).collect::<Vec<_>>()
        };
        let one = run(1);
        let three = run(3);
        assert_eq!(one.len(), 5);
        for (a, b) in one.iter().zip(&three) {
            assert_eq!(a.number, b.number);
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.images, b.images);
        }
        assert_eq!(one.iter().map(|b| b.number).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(one[0].labels, vec![2, 2]);
        assert_eq!(one[0].images.len(), 2 * 3 * 8 * 8);
        // dropping a loader early stops its workers
        let mut l = BatchLoader::start(paths.clone(), labels.clone(), plans.clone(), cfg(2), Arc::new(BadImages::new()));
        assert!(l.next().is_some());
        drop(l);
    }

    #[test]
    fn corrupt_images_are_reported_once_and_skipped() {
        let d = tempfile::tempdir().unwrap();
        let mut paths = write_images(d.path(), 3);
        let broken = d.path().join("broken.png");
        std::fs::write(&broken, b"not a png").unwrap();
        paths.push(broken.clone());
        let paths = Arc::new(paths);
        let labels = Arc::new(vec![0, 1, 2, 3]);
        let bad = Arc::new(BadImages::new());
        let plans = plans_from_indices(&[0, 3, 1, 3, 2, 3], 2, 0);
        let batches: Vec<_> = BatchLoader::start(paths, labels, plans, cfg(2), bad.clone()).collect();
        assert_eq!(batches.len(), 3);
        for (b, want) in batches.iter().zip([0i64, 1, 2]) {
            assert_eq!(b.labels, vec![want]);
            assert_eq!(b.skipped, 1);
            assert_eq!(b.images.len(), 3 * 8 * 8);
        }
        assert_eq!(bad.len(), 1);
        assert!(bad.contains(&broken));
    }

    #[test]
    fn splits_like_the_reference() {
        let classes: Vec<ImageClass> = (0..4)
            .map(|c| ImageClass {
                name: format!("c{c}"),
                image_paths: (0..(c + 1) * 3).map(|i| PathBuf::from(format!("c{c}/{i}.png"))).collect(),
            })
            .collect();
        // ratio 0.25: class sizes 3, 6, 9, 12 -> train 2, 4, 6, 9
        let (train, val) = split_dataset(&classes, 0.25, 0.0, SplitMode::Images, 1);
        assert_eq!(train.iter().map(|c| c.image_paths.len()).collect::<Vec<_>>(), vec![2, 4, 6, 9]);
        assert_eq!(val.iter().map(|c| c.image_paths.len()).collect::<Vec<_>>(), vec![1, 2, 3, 3]);
        for (t, v) in train.iter().zip(&val) {
            assert!(t.image_paths.iter().all(|p| !v.image_paths.contains(p)));
        }
        // classes with too few training images are dropped
        let (train, _) = split_dataset(&classes, 0.25, 3.0, SplitMode::Images, 1);
        assert_eq!(train.len(), 3);
        assert_eq!(train[0].name, "c1");
        // by classes
        let (train, val) = split_dataset(&classes, 0.25, 0.0, SplitMode::Classes, 1);
        assert_eq!((train.len(), val.len()), (3, 1));
        // no split
        let (train, val) = split_dataset(&classes, 0.0, 0.0, SplitMode::Images, 1);
        assert_eq!((train.len(), val.len()), (4, 0));
        let (p, l) = paths_and_labels(&train);
        assert_eq!(p.len(), 30);
        assert_eq!(l[3], 1);
    }
}
