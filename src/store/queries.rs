//! Reads of jobs, each by an index or a counter — none walks the store's history on a periodic
//! path except [`Store::jobs`] (status, audit tools).

use std::sync::atomic::Ordering;

use super::{decode, Job, JobState, Store, StoreError};

impl Store {
    /// One job.
    pub fn job(&self, key: &str) -> Result<Option<Job>, StoreError> {
        self.jobs
            .get(key.as_bytes())?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Every job, in detection order.
    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self.queue.iter() {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Jobs not yet closed (not Done, Skipped or Parked), in detection order.
    pub fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self.open.iter() {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// The earliest-detected open job detected before `seq` that `pred` accepts (reads only
    /// the open jobs before it, in detection order, and stops at the first match).
    pub fn first_open_before(
        &self,
        seq: u64,
        pred: impl Fn(&Job) -> bool,
    ) -> Result<Option<Job>, StoreError> {
        for entry in self.open.range(..seq.to_be_bytes()) {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                if pred(&job) {
                    return Ok(Some(job));
                }
            }
        }
        Ok(None)
    }

    /// How many jobs are not yet closed.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Open jobs that cannot move until someone acts: waiting on a job that is parked (or on
    /// one that itself waits on a parked job). `backfill` is caught up when only these remain.
    pub fn blocked_on_parked(&self) -> Result<Vec<Job>, StoreError> {
        let open = self.open_jobs()?;
        let mut out = Vec::new();
        for job in open {
            let mut on = match &job.state {
                JobState::Waiting { on, .. } => on.clone(),
                _ => continue,
            };
            // Follow the chain of waits (bounded: a cycle is not "blocked on parked").
            for _ in 0..8 {
                match self.job(&on)?.map(|j| j.state) {
                    Some(JobState::Parked { .. }) => {
                        out.push(job);
                        break;
                    }
                    Some(JobState::Waiting { on: next, .. }) => on = next,
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Parked jobs (an index: constant cost however long the history).
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Every job recorded and not forgotten (a counter: constant cost).
    pub fn job_count(&self) -> usize {
        self.job_total.load(Ordering::SeqCst) as usize
    }

    /// Done jobs still holding their prepared event (not compacted yet).
    pub fn uncompacted_done_count(&self) -> usize {
        self.done.len()
    }

    /// The newest job recorded for alias `alias` of model `name` (an index lookup).
    pub fn newest_alias_job(&self, name: &str, alias: &str) -> Result<Option<Job>, StoreError> {
        match self.index.get(format!("a/{name}/{alias}"))? {
            Some(k) => self.job(&String::from_utf8_lossy(&k)),
            None => Ok(None),
        }
    }

    /// Whether a stage change of `name`/`version` to `to` at `last_updated_ms` is recorded.
    pub fn stage_change_seen(
        &self,
        name: &str,
        version: &str,
        to: &str,
        last_updated_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .index
            .get(format!("s/{name}/{version}/{to}/{last_updated_ms}"))?
            .is_some())
    }

    /// Open jobs due at `now_ms`, in detection order.
    pub fn due(&self, now: u64) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .open_jobs()?
            .into_iter()
            .filter(|j| {
                j.state.is_open()
                    && !matches!(j.state, JobState::Batched { .. })
                    && j.next_attempt_ms <= now
            })
            .collect())
    }
}
