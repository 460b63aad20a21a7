//! TensorBoard event files in the run's log folder, beside `steps.csv` and `epochs.csv`, so
//! that `tensorboard --logdir ~/logs/facenet` shows a run as it shows the reference's (whose
//! `train_softmax.py` writes them through `tf.summary.FileWriter`).
//!
//! A file `events.out.tfevents.<secs>.<hostname>` is a sequence of TFRecords (u64 length,
//! masked CRC32C of the length, the data, masked CRC32C of the data; little-endian), each one
//! `tensorflow.Event` protobuf: the first says `file_version: "brain.Event:2"`, the others
//! hold scalars (`summary.value[i] = {tag, simple_value}`) at a step. The few protobuf fields
//! are encoded here by hand ([`Event`]); the CRC is the `crc32c` crate's.
//!
//! What a run logs ([`TrainEvents`]), the reference's tag names where it has them:
//!
//! | tag | when | value |
//! |---|---|---|
//! | `total_loss (raw)`, `cross_entropy (raw)` | every step | the step's total loss and cross-entropy |
//! | `total_loss`, `cross_entropy` | every step | their moving averages (decay 0.9, as the reference's `_add_loss_summaries`) |
//! | `learning_rate` | every step | the decayed learning rate of the step |
//! | `train/reg_loss`, `train/center_loss`, `train/prelogits_norm`, `train/accuracy` | every step | as in `steps.csv` |
//! | `time/step` | every step | seconds of the step (`steps.csv`'s `time`) |
//! | `time/total` | every epoch | seconds of the epoch's training (`time_train`) |
//! | `lfw/accuracy`, `lfw/val_rate`, `time/lfw` | epochs with `--lfw_dir` | mean accuracy, VAL@FAR, seconds |
//! | `lfw/auc`, `lfw/eer` | epochs with `--lfw_dir` | area under the ROC, equal error rate |
//! | `train/val_loss`, `train/val_xent`, `train/val_accuracy`, `time/validate` | validated epochs | the validation set's loss, cross-entropy, accuracy, seconds |
//! | `train/images_per_s` | every epoch | training throughput |
//!
//! With `--log_histograms`, each epoch also logs histograms ([`Histogram`], TensorFlow's
//! default buckets) of every weight tensor (tag: its name with `/` for `.`, e.g.
//! `conv2d_1a/conv/weight`, `repeat_1/0/branch0/bn/beta`) and of the prelogits of the
//! epoch's last training batch (`prelogits`), as the reference's `tf.summary.histogram`s.
//!
//! Epoch values are logged at the epoch's last global step. The moving averages start at the
//! first value (the reference's start at zero).
//!
//! A resumed run (`--resume`) writes a new file into the same folder (TensorBoard reads a
//! folder's files in name order as one run) after trimming the folder's earlier files to the
//! steps its checkpoint holds, as `steps.csv` is trimmed, and its first event is a
//! `SessionLog.START` at the next step, which tells a TensorBoard that is already watching to
//! drop what it read beyond the checkpoint. The loss averages continue from `steps.csv`.
//!
//! Event files never stop training: on the first I/O error one warning names the file and
//! the run goes on without events.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::histogram::Histogram;
use super::stats::{read_csv, EpochRecord, StepRecord};
use crate::util::atomic::write_atomic;

/// `Event.file_version` of the first record of a file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// How often buffered events are written out during an epoch (TensorFlow's writer: 120 s).
const FLUSH_EVERY_SECS: u64 = 10;

/// Decay of the reference's loss moving averages (`tf.train.ExponentialMovingAverage(0.9)`).
const LOSS_AVERAGE_DECAY: f64 = 0.9;

/// The checksum of TFRecord framing: CRC32C rotated right by 15 bits plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends `data` to `out` as one TFRecord.
pub fn frame_record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Where [`split_records`] stopped.
#[derive(Debug)]
pub struct RecordError<'a> {
    /// Which record, and what is wrong with it.
    pub message: String,
    /// The file ends inside the record (as when a writer is killed), rather than a checksum
    /// failing.
    pub truncated: bool,
    /// The complete records before it.
    pub before: Vec<&'a [u8]>,
}

/// The TFRecords of `bytes`, both checksums checked.
pub fn split_records(bytes: &[u8]) -> std::result::Result<Vec<&[u8]>, RecordError<'_>> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let stop = |at: usize, what: String, truncated: bool, before| {
        Err(RecordError { message: format!("record at byte {at}: {what}"), truncated, before })
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 12 {
            return stop(at, "truncated header".into(), true, records);
        }
        let len_bytes = &rest[..8];
        let len_crc = u32::from_le_bytes(rest[8..12].try_into().unwrap());
        if masked_crc32c(len_bytes) != len_crc {
            return stop(at, "length checksum mismatch".into(), false, records);
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap());
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(16)).filter(|&e| e <= rest.len()) else {
            return stop(at, format!("truncated data ({len} bytes announced)"), true, records);
        };
        let data = &rest[12..end - 4];
        if masked_crc32c(data) != u32::from_le_bytes(rest[end - 4..end].try_into().unwrap()) {
            return stop(at, "data checksum mismatch".into(), false, records);
        }
        records.push(data);
        at += end;
    }
    Ok(records)
}

/// The fields of `tensorflow.Event` this module writes and reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch (field 1).
    pub wall_time: f64,
    /// Global step (field 2).
    pub step: i64,
    /// `file_version` (field 3): set on the first event of a file.
    pub file_version: Option<String>,
    /// `summary.value[*]` (field 5) that have a `simple_value`: (tag, value).
    pub scalars: Vec<(String, f32)>,
    /// `summary.value[*]` that have a `histo` (`HistogramProto`, field 5 of the value).
    pub histograms: Vec<(String, Histogram)>,
    /// `session_log.status == START` (field 7): a (re)started run; TensorBoard drops the
    /// events it read at steps >= `step`.
    pub session_start: bool,
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// One field of a protobuf message.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32([u8; 4]),
}

/// The fields of one protobuf message, in order: (number, value).
fn parse_fields(mut b: &[u8]) -> Result<Vec<(u32, Field<'_>)>> {
    fn varint(b: &mut &[u8]) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&byte, rest)) = b.split_first() else { bail!("truncated varint") };
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes")
    }
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if b.len() < n {
            bail!("truncated field ({n} bytes wanted, {} left)", b.len());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let mut fields = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let number = u32::try_from(key >> 3).context("field number out of range")?;
        let value = match (key & 7) as u8 {
            VARINT => Field::Varint(varint(&mut b)?),
            FIXED64 => Field::Fixed64(take(&mut b, 8)?.try_into().unwrap()),
            LEN => {
                let n = usize::try_from(varint(&mut b)?).context("length out of range")?;
                Field::Len(take(&mut b, n)?)
            }
            FIXED32 => Field::Fixed32(take(&mut b, 4)?.try_into().unwrap()),
            w => bail!("field {number}: unsupported wire type {w}"),
        };
        fields.push((number, value));
    }
    Ok(fields)
}

impl Event {
    /// Scalars at `step`, stamped with the current time.
    pub fn scalars(step: u64, values: &[(&str, f64)]) -> Event {
        Event {
            wall_time: now(),
            step: step as i64,
            scalars: values.iter().map(|(t, v)| (t.to_string(), *v as f32)).collect(),
            ..Event::default()
        }
    }

    /// The protobuf encoding, as TensorFlow's writes it (fields in number order, proto3
    /// defaults left out, a scalar's value always written).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.wall_time != 0.0 {
            put_key(&mut out, 1, FIXED64);
            out.extend_from_slice(&self.wall_time.to_le_bytes());
        }
        if self.step != 0 {
            put_key(&mut out, 2, VARINT);
            put_varint(&mut out, self.step as u64);
        }
        if let Some(v) = &self.file_version {
            put_len(&mut out, 3, v.as_bytes());
        }
        if !self.scalars.is_empty() || !self.histograms.is_empty() {
            let mut summary = Vec::new();
            for (tag, value) in &self.scalars {
                let mut v = Vec::new();
                put_len(&mut v, 1, tag.as_bytes());
                put_key(&mut v, 2, FIXED32);
                v.extend_from_slice(&value.to_le_bytes());
                put_len(&mut summary, 1, &v);
            }
            for (tag, h) in &self.histograms {
                let mut v = Vec::new();
                put_len(&mut v, 1, tag.as_bytes());
                put_len(&mut v, 5, &encode_histogram(h));
                put_len(&mut summary, 1, &v);
            }
            put_len(&mut out, 5, &summary);
        }
        if self.session_start {
            put_len(&mut out, 7, &[0x08, 0x01]); // SessionLog { status: START }
        }
        out
    }

    /// Reads an encoded event; fields and summary values of other kinds are skipped.
    pub fn decode(bytes: &[u8]) -> Result<Event> {
        let mut e = Event::default();
        for (number, field) in parse_fields(bytes)? {
            match (number, field) {
                (1, Field::Fixed64(b)) => e.wall_time = f64::from_le_bytes(b),
                (2, Field::Varint(v)) => e.step = v as i64,
                (3, Field::Len(b)) => e.file_version = Some(String::from_utf8(b.to_vec()).context("file_version: not UTF-8")?),
                (5, Field::Len(summary)) => {
                    for (n, value) in parse_fields(summary)? {
                        let (1, Field::Len(value)) = (n, value) else { continue };
                        let (mut tag, mut simple, mut histo) = (None, None, None);
                        for (n, f) in parse_fields(value)? {
                            match (n, f) {
                                (1, Field::Len(t)) => tag = Some(String::from_utf8(t.to_vec()).context("tag: not UTF-8")?),
                                (2, Field::Fixed32(v)) => simple = Some(f32::from_le_bytes(v)),
                                (5, Field::Len(h)) => histo = Some(decode_histogram(h)?),
                                _ => {}
                            }
                        }
                        if let Some(v) = simple {
                            e.scalars.push((tag.clone().unwrap_or_default(), v));
                        }
                        if let Some(h) = histo {
                            e.histograms.push((tag.unwrap_or_default(), h));
                        }
                    }
                }
                (7, Field::Len(log)) => {
                    e.session_start = parse_fields(log)?.iter().any(|(n, f)| *n == 1 && matches!(f, Field::Varint(1)));
                }
                (1..=3 | 5 | 7, _) => bail!("field {number}: unexpected wire type"),
                _ => {}
            }
        }
        Ok(e)
    }
}

/// `HistogramProto`: min, max, num, sum, sum_squares (doubles, fields 1-5), then the packed
/// doubles bucket_limit (6) and bucket (7).
fn encode_histogram(h: &Histogram) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, v) in [(1, h.min), (2, h.max), (3, h.num), (4, h.sum), (5, h.sum_squares)] {
        if v != 0.0 {
            put_key(&mut out, field, FIXED64);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for (field, list) in [(6, &h.bucket_limit), (7, &h.bucket)] {
        if !list.is_empty() {
            let packed: Vec<u8> = list.iter().flat_map(|v| v.to_le_bytes()).collect();
            put_len(&mut out, field, &packed);
        }
    }
    out
}

fn decode_histogram(b: &[u8]) -> Result<Histogram> {
    let mut h = Histogram::default();
    for (n, f) in parse_fields(b)? {
        match (n, f) {
            (1..=5, Field::Fixed64(v)) => {
                let v = f64::from_le_bytes(v);
                *[&mut h.min, &mut h.max, &mut h.num, &mut h.sum, &mut h.sum_squares][n as usize - 1] = v;
            }
            (6 | 7, Field::Len(p)) => {
                if p.len() % 8 != 0 {
                    bail!("histogram field {n}: {} bytes is not a list of doubles", p.len());
                }
                let list = if n == 6 { &mut h.bucket_limit } else { &mut h.bucket };
                list.extend(p.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())));
            }
            (6 | 7, Field::Fixed64(v)) => (if n == 6 { &mut h.bucket_limit } else { &mut h.bucket }).push(f64::from_le_bytes(v)),
            _ => {}
        }
    }
    Ok(h)
}

/// The events of one file, every record's checksums checked.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = split_records(&bytes).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    records.into_iter().map(|r| Event::decode(r).with_context(|| format!("{}: bad event", path.display()))).collect()
}

/// The event files of `log_dir`, in the order TensorBoard reads them (by name).
pub fn event_files(log_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(log_dir).with_context(|| format!("cannot read {}", log_dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("events.out.tfevents.") && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// This machine's name, as TensorFlow puts it into event file names.
fn hostname() -> String {
    #[cfg(unix)]
    let name = {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for `buf.len()` bytes; the name is read up to its NUL.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if ok {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        }
    };
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Appends events to one new event file. Never fails: on the first I/O error it prints one
/// warning naming the file and writes nothing more.
pub struct EventWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    last_flush: Instant,
}

impl EventWriter {
    /// Starts `log_dir/events.out.tfevents.<secs>.<hostname>` (`.2`, `.3`, ... added when
    /// that name is taken) with its `file_version` event, written out at once.
    pub fn create(log_dir: &Path) -> EventWriter {
        let wall_time = now();
        let base = log_dir.join(format!("events.out.tfevents.{:010}.{}", wall_time as u64, hostname()));
        let mut path = base.clone();
        let mut opened = None;
        for k in 1..=100 {
            if k > 1 {
                path = PathBuf::from(format!("{}.{k}", base.display()));
            }
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                r => {
                    opened = Some(r);
                    break;
                }
            }
        }
        let file = opened.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::AlreadyExists, "100 event files of this second exist")));
        let mut w = EventWriter { path, out: None, last_flush: Instant::now() };
        match file {
            Ok(f) => {
                w.out = Some(BufWriter::new(f));
                w.write(&Event { wall_time, file_version: Some(FILE_VERSION.into()), ..Event::default() });
                w.flush();
            }
            Err(e) => w.fail(&e),
        }
        w
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether events still go to the file (no I/O error yet).
    pub fn is_writing(&self) -> bool {
        self.out.is_some()
    }

    /// Appends one event (buffered: written out by [`flush`](Self::flush), on drop, and by the
    /// first write 10 s or more after the last flush).
    pub fn write(&mut self, event: &Event) {
        let Some(out) = &mut self.out else { return };
        let mut record = Vec::new();
        frame_record(&event.encode(), &mut record);
        if let Err(e) = out.write_all(&record) {
            self.fail(&e);
        } else if self.last_flush.elapsed().as_secs() >= FLUSH_EVERY_SECS {
            self.flush();
        }
    }

    /// Histograms of the tensors `values` (tag, values) at `step`, one event.
    pub fn histograms(&mut self, step: u64, values: &[(String, Vec<f32>)]) {
        if !values.is_empty() {
            let histograms = values.iter().map(|(t, v)| (t.clone(), Histogram::of(v))).collect();
            self.write(&Event { wall_time: now(), step: step as i64, histograms, ..Event::default() });
        }
    }

    /// Scalars at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) {
        if !values.is_empty() {
            self.write(&Event::scalars(step, values));
        }
    }

    /// Writes the buffered events out.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if let Some(Err(e)) = self.out.as_mut().map(|o| o.flush()) {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &io::Error) {
        eprintln!("warning: {}: {e}; TensorBoard events are no longer written (training goes on)", self.path.display());
        if let Some(out) = self.out.take() {
            // what is still buffered cannot be written either: drop it without a second try
            let _ = out.into_parts();
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Trims the event files of `log_dir` to the events at steps <= `last_step` (the file
/// versions kept), as a resumed run trims `steps.csv`: a killed run's events after its last
/// checkpoint are superseded by the resumed run's. Files already within the limit are left
/// alone; one that cannot be read or rewritten gets a warning and stays as it is.
pub fn trim_event_files(log_dir: &Path, last_step: u64) {
    let Ok(files) = event_files(log_dir) else { return };
    for path in files {
        if let Err(e) = trim_event_file(&path, last_step) {
            eprintln!("warning: {}: {e:#}; left as it is", path.display());
        }
    }
}

fn trim_event_file(path: &Path, last_step: u64) -> Result<()> {
    let bytes = fs::read(path)?;
    // a record cut by a kill goes; a file with a corrupt record, or without a complete one,
    // is not touched
    let (records, cut) = match split_records(&bytes) {
        Ok(r) => (r, false),
        Err(e) if e.truncated && !e.before.is_empty() => (e.before, true),
        Err(e) => bail!("{}", e.message),
    };
    let mut kept = Vec::new();
    let mut dropped = cut;
    for r in records {
        let e = Event::decode(r)?;
        if e.file_version.is_some() || u64::try_from(e.step).is_ok_and(|s| s <= last_step) {
            frame_record(r, &mut kept);
        } else {
            dropped = true;
        }
    }
    if dropped {
        write_atomic(path, &kept).context("cannot rewrite")?;
    }
    Ok(())
}

/// A run's events: the tags of `train_softmax.py` (see the module's table) from the step and
/// epoch records.
pub struct TrainEvents {
    writer: EventWriter,
    /// Moving averages of the total loss and the cross-entropy.
    averages: Option<(f64, f64)>,
}

impl TrainEvents {
    /// Starts the run's event file in `log_dir`, the run being at `global_step` (0 when
    /// fresh): earlier files of the folder are trimmed to it, the loss averages continue from
    /// `steps.csv` (already trimmed), and a `SessionLog.START` at the next step comes first.
    pub fn open(log_dir: &Path, global_step: u64) -> TrainEvents {
        trim_event_files(log_dir, global_step);
        let averages = read_csv(&log_dir.join("steps.csv")).ok().and_then(|rows| loss_averages(&rows));
        let mut writer = EventWriter::create(log_dir);
        writer.write(&Event { wall_time: now(), step: global_step as i64 + 1, session_start: true, ..Event::default() });
        writer.flush();
        TrainEvents { writer, averages }
    }

    /// The event file written.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Logs one optimizer step.
    pub fn step(&mut self, rec: &StepRecord) {
        let v = &rec.values;
        let (total, xent) = match self.averages {
            Some((t, x)) => (average(t, v.total), average(x, v.xent)),
            None => (v.total, v.xent),
        };
        self.averages = Some((total, xent));
        self.writer.scalars(
            rec.step,
            &[
                ("total_loss (raw)", v.total),
                ("total_loss", total),
                ("cross_entropy (raw)", v.xent),
                ("cross_entropy", xent),
                ("learning_rate", rec.lr),
                ("train/reg_loss", v.reg),
                ("train/center_loss", v.center),
                ("train/prelogits_norm", v.prelogits_norm),
                ("train/accuracy", v.accuracy),
                ("time/step", rec.seconds),
            ],
        );
    }

    /// Logs one epoch's results and writes everything out.
    pub fn epoch(&mut self, rec: &EpochRecord) {
        let mut values = vec![("time/total", rec.time_train), ("train/images_per_s", rec.images_per_s)];
        if let Some(v) = &rec.val {
            values.extend([
                ("train/val_loss", v.loss),
                ("train/val_xent", v.xent),
                ("train/val_accuracy", v.accuracy),
                ("time/validate", rec.time_validate),
            ]);
        }
        if let Some(l) = &rec.lfw {
            values.extend([
                ("lfw/accuracy", l.accuracy),
                ("lfw/val_rate", l.val),
                ("lfw/auc", l.auc),
                ("lfw/eer", l.eer),
                ("time/lfw", rec.time_evaluate),
            ]);
        }
        self.writer.scalars(rec.step, &values);
        self.writer.flush();
    }
}

impl TrainEvents {
    /// Logs histograms (`--log_histograms`) at `step`: (tag, values) each.
    pub fn histograms(&mut self, step: u64, values: &[(String, Vec<f32>)]) {
        self.writer.histograms(step, values);
        self.writer.flush();
    }
}

fn average(avg: f64, value: f64) -> f64 {
    LOSS_AVERAGE_DECAY * avg + (1.0 - LOSS_AVERAGE_DECAY) * value
}

/// The loss averages after the rows of `steps.csv` (header first), or `None` without rows.
fn loss_averages(rows: &[Vec<String>]) -> Option<(f64, f64)> {
    let header = rows.first()?;
    let (ti, xi) = (header.iter().position(|h| h == "loss")?, header.iter().position(|h| h == "xent")?);
    let mut averages = None;
    for row in &rows[1..] {
        let (Some(Ok(t)), Some(Ok(x))) = (row.get(ti).map(|s| s.parse::<f64>()), row.get(xi).map(|s| s.parse::<f64>())) else {
            continue;
        };
        averages = Some(match averages {
            Some((at, ax)) => (average(at, t), average(ax, x)),
            None => (t, x),
        });
    }
    averages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::evaluate::{LfwMetrics, ValMetrics};
    use crate::train::loss::LossValues;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Three records written by tensorboard's own Python `RecordWriter` from `event_pb2`
    /// messages (a file version; three scalars at step 7; a `SessionLog.START` at step 3).
    const TENSORBOARD_BYTES: &str = "1800000000000000a37f4b220900001040fc54d9411a0d627261696e2e4576656e743a32338d2fe9480000\
        0000000000fe92489d0900006040fc54d94110072a3b0a130a0c6c66772f6163637572616379150000803e0a170a10746f74616c5f6c6f73\
        7320287261772915000040c00a0b0a047a65726f1500000000a88a39cd0f000000000000006d532b090900008040fc54d94110033a020801\
        4a211b3b";

    fn golden_events() -> Vec<Event> {
        vec![
            Event { wall_time: 1_700_000_000.25, file_version: Some(FILE_VERSION.into()), ..Event::default() },
            Event {
                wall_time: 1_700_000_001.5,
                step: 7,
                scalars: vec![("lfw/accuracy".into(), 0.25), ("total_loss (raw)".into(), -3.0), ("zero".into(), 0.0)],
                ..Event::default()
            },
            Event { wall_time: 1_700_000_002.0, step: 3, session_start: true, ..Event::default() },
        ]
    }

    #[test]
    fn crc32c_and_its_mask() {
        // the CRC-32C check value (RFC 3720), and its mask ((crc >> 15) | (crc << 17)) + 0xa282ead8
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn encodes_byte_for_byte_as_tensorboard_does() {
        let mut ours = Vec::new();
        for e in golden_events() {
            frame_record(&e.encode(), &mut ours);
        }
        assert_eq!(ours, unhex(TENSORBOARD_BYTES));
        let back: Vec<Event> = split_records(&ours).unwrap().into_iter().map(|r| Event::decode(r).unwrap()).collect();
        assert_eq!(back, golden_events());
    }

    #[test]
    fn reader_refuses_bad_checksums_and_truncation() {
        let good = unhex(TENSORBOARD_BYTES);
        let first_len = 12 + 0x18 + 4;
        // a flipped bit in the data, in the length; a record cut short
        for (flip, want) in [(20, "data checksum"), (1, "length checksum")] {
            let mut b = good.clone();
            b[flip] ^= 0x10;
            let e = split_records(&b).unwrap_err();
            assert!(e.message.contains(want) && e.message.contains("byte 0") && !e.truncated, "{e:?}");
            assert!(e.before.is_empty());
        }
        let e = split_records(&good[..good.len() - 3]).unwrap_err();
        assert!(e.message.contains("truncated data") && e.truncated, "{e:?}");
        assert_eq!(e.before.len(), 2);
        let e = split_records(&good[..first_len + 5]).unwrap_err();
        assert!(e.message.contains(&format!("byte {first_len}: truncated header")) && e.truncated, "{e:?}");
        // a protobuf cut inside a field
        assert!(Event::decode(&golden_events()[1].encode()[..20]).is_err());
    }

    #[test]
    fn writer_files_read_back_with_tags_steps_and_values() {
        let d = tempfile::tempdir().unwrap();
        let path = {
            let mut w = EventWriter::create(d.path());
            w.scalars(1, &[("a", 1.5), ("b/c", -2.0)]);
            w.scalars(2, &[("a", f64::NAN)]);
            w.scalars(3, &[]);
            w.path().to_path_buf()
        }; // dropped: flushed
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents.") && name.split('.').nth(3).unwrap().len() == 10, "{name}");
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        assert!((events[0].wall_time - now()).abs() < 60.0);
        assert_eq!(events[1].step, 1);
        assert_eq!(events[1].scalars, vec![("a".into(), 1.5), ("b/c".into(), -2.0)]);
        assert_eq!(events[2].step, 2);
        assert!(events[2].scalars[0].1.is_nan());
        // a second writer in the same second gets its own file, after the first by name
        let w2 = EventWriter::create(d.path());
        let files = event_files(d.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], path);
        assert_eq!(files[1], w2.path());
    }

    #[test]
    fn io_errors_warn_once_and_stop_writing() {
        let d = tempfile::tempdir().unwrap();
        // a log folder that cannot be written into: no panic, nothing written
        let missing = d.path().join("no/such/folder");
        let mut w = EventWriter::create(&missing);
        assert!(!w.is_writing());
        w.scalars(1, &[("a", 1.0)]);
        w.flush();
        assert!(!missing.exists());
        // a full disk
        if Path::new("/dev/full").exists() {
            let mut w = EventWriter { path: "/dev/full".into(), out: None, last_flush: Instant::now() };
            w.out = Some(BufWriter::with_capacity(16, OpenOptions::new().write(true).open("/dev/full").unwrap()));
            w.scalars(1, &[("a much longer tag than the buffer", 1.0)]);
            assert!(!w.is_writing());
            w.scalars(2, &[("a", 1.0)]);
        }
    }

    fn step_record(step: u64, total: f64) -> StepRecord {
        StepRecord {
            step,
            epoch: 1,
            batch: step as usize,
            values: LossValues { total, xent: total - 0.5, reg: 0.5, center: 0.25, prelogits_norm: 3.0, accuracy: 0.125 },
            lr: 0.01,
            images: 8,
            skipped: 0,
            seconds: 0.75,
        }
    }

    fn scalar(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
        events.iter().flat_map(|e| e.scalars.iter().filter(|(t, _)| t == tag).map(move |(_, v)| (e.step, *v))).collect()
    }

    #[test]
    fn train_events_log_the_reference_tags() {
        let d = tempfile::tempdir().unwrap();
        let path = {
            let mut ev = TrainEvents::open(d.path(), 0);
            ev.step(&step_record(1, 4.0));
            ev.step(&step_record(2, 2.0));
            let lfw = LfwMetrics {
                accuracy: 0.75,
                accuracy_std: 0.0,
                val: 0.5,
                val_std: 0.0,
                far: 0.001,
                auc: 0.875,
                eer: 0.25,
                pairs: 12,
                seconds: 1.5,
            };
            let val = ValMetrics { loss: 3.5, xent: 3.0, accuracy: 0.375, images: 10, seconds: 0.5 };
            ev.epoch(&EpochRecord { epoch: 1, step: 2, time_train: 2.5, time_evaluate: 1.5, lfw: Some(lfw), ..Default::default() });
            ev.epoch(&EpochRecord { epoch: 2, step: 4, time_validate: 0.5, val: Some(val), ..Default::default() });
            ev.path().to_path_buf()
        };
        let events = read_events(&path).unwrap();
        assert!(events[1].session_start && events[1].step == 1);
        assert_eq!(scalar(&events, "total_loss (raw)"), vec![(1, 4.0), (2, 2.0)]);
        assert_eq!(scalar(&events, "total_loss"), vec![(1, 4.0), (2, (0.9 * 4.0 + 0.1 * 2.0) as f32)]);
        assert_eq!(scalar(&events, "cross_entropy (raw)"), vec![(1, 3.5), (2, 1.5)]);
        assert_eq!(scalar(&events, "learning_rate"), vec![(1, 0.01), (2, 0.01)]);
        assert_eq!(scalar(&events, "train/center_loss"), vec![(1, 0.25), (2, 0.25)]);
        assert_eq!(scalar(&events, "time/step"), vec![(1, 0.75), (2, 0.75)]);
        assert_eq!(scalar(&events, "lfw/accuracy"), vec![(2, 0.75)]);
        assert_eq!(scalar(&events, "lfw/val_rate"), vec![(2, 0.5)]);
        assert_eq!(scalar(&events, "lfw/auc"), vec![(2, 0.875)]);
        assert_eq!(scalar(&events, "lfw/eer"), vec![(2, 0.25)]);
        assert_eq!(scalar(&events, "time/lfw"), vec![(2, 1.5)]);
        assert_eq!(scalar(&events, "time/total"), vec![(2, 2.5), (4, 0.0)]);
        assert_eq!(scalar(&events, "train/val_loss"), vec![(4, 3.5)]);
        assert_eq!(scalar(&events, "train/val_accuracy"), vec![(4, 0.375)]);
        assert_eq!(scalar(&events, "time/validate"), vec![(4, 0.5)]);
    }

    #[test]
    fn histograms_read_back() {
        let d = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
        let path = {
            let mut ev = TrainEvents::open(d.path(), 0);
            ev.histograms(5, &[("conv2d_1a/conv/weight".into(), values.clone()), ("prelogits".into(), vec![1.0, -2.0, 3.0])]);
            ev.path().to_path_buf()
        };
        let events = read_events(&path).unwrap();
        let e = events.iter().find(|e| !e.histograms.is_empty()).unwrap();
        assert_eq!(e.step, 5);
        assert!(e.scalars.is_empty());
        assert_eq!(e.histograms.len(), 2);
        let (tag, h) = &e.histograms[0];
        assert_eq!(tag, "conv2d_1a/conv/weight");
        assert_eq!(h, &Histogram::of(&values));
        assert_eq!(h.num, 1000.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 1000.0);
        assert_eq!(h.bucket.len(), h.bucket_limit.len());
        assert!(h.min >= -0.1001 && h.max <= 0.1001 && h.min < 0.0, "{} {}", h.min, h.max);
        assert_eq!(e.histograms[1].1.sum, 2.0);
        assert_eq!(e.histograms[1].1.sum_squares, 14.0);
    }

    #[test]
    fn a_resumed_run_trims_earlier_files_and_continues_the_averages() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("steps.csv"), "step,loss,xent\n1,4,3\n2,2,1\n").unwrap();
        let first = {
            let mut ev = TrainEvents::open(d.path(), 0);
            for s in 1..=4 {
                ev.step(&step_record(s, 4.0 / s as f64));
            }
            ev.path().to_path_buf()
        };
        // killed inside a record after step 4
        let mut bytes = fs::read(&first).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(&first, &bytes).unwrap();
        // resumed from the checkpoint at step 2 (steps.csv already trimmed to it)
        let mut ev = TrainEvents::open(d.path(), 2);
        ev.step(&step_record(3, 1.0));
        drop(ev);
        let files = event_files(d.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], first);
        let old = read_events(&first).unwrap();
        assert_eq!(old[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(scalar(&old, "total_loss (raw)"), vec![(1, 4.0), (2, 2.0)]);
        let new = read_events(&files[1]).unwrap();
        assert!(new[1].session_start && new[1].step == 3);
        let avg = |a: f64, x: f64| 0.9 * a + 0.1 * x;
        assert_eq!(scalar(&new, "total_loss"), vec![(3, avg(avg(4.0, 2.0), 1.0) as f32)]);
        assert_eq!(scalar(&new, "cross_entropy"), vec![(3, avg(avg(3.0, 1.0), 0.5) as f32)]);
        // files that are not event files, or corrupt ones, are left alone
        let mut corrupt = fs::read(&files[1]).unwrap();
        corrupt[30] ^= 1;
        for (name, bytes) in [("events.out.tfevents.0000000001.x", b"garbage".to_vec()), ("events.out.tfevents.0000000002.x", corrupt)] {
            fs::write(d.path().join(name), &bytes).unwrap();
            trim_event_files(d.path(), 0);
            assert_eq!(fs::read(d.path().join(name)).unwrap(), bytes);
        }
    }
}
