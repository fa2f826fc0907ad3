//! What one person may make a shared host do. Apps and their dynos have budgets of their
//! own (memory, CPU, add-on storage, log lines); these are the person's: how fast they
//! call the API, and how many apps they create. Without them one member's script could
//! create apps or releases without end, each a store write and dynos started, at every
//! other tenant's expense. The admin, who runs the host, has neither.

use super::Host;
use super::errors::Result;
use crate::token_bucket::TokenBucket;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_core::Person;

/// A host's limits per person (`wdeploy host --api-rate`, `--api-burst`,
/// `--max-apps-per-person`).
#[derive(Debug, Clone, Copy)]
pub struct PersonLimits {
    /// API calls a second, after the burst.
    pub api_rate: u32,
    /// API calls at once.
    pub api_burst: u32,
    /// Apps a person may create while they have access to this many (Heroku's is 100).
    pub max_apps: usize,
}

impl Default for PersonLimits {
    fn default() -> Self {
        // The dashboard calls about twice a second; a deploy script a few dozen times.
        PersonLimits {
            api_rate: 10,
            api_burst: 600,
            max_apps: 100,
        }
    }
}

/// Each person's API calls so far (one entry per person who called: people are the
/// admin's to add, so the map is as small as the host's list of users).
#[derive(Default)]
pub(super) struct CallBudgets {
    people: Mutex<HashMap<Person, PersonCalls>>,
}

/// One person's calls on this node: its own bucket, and the calls it took from the
/// shared budget and has not spent yet.
struct PersonCalls {
    bucket: TokenBucket,
    taken: u32,
}

/// Calls a node takes from the shared budget at once: a tenth of the burst, at most 10
/// (one store call per 10 API calls at the default burst of 600). A person spreading
/// calls over N nodes may so get up to N × this more than the budget, never a node's
/// whole budget each.
fn calls_taken_at_once(burst: u32) -> u32 {
    (burst / 10).clamp(1, 10)
}

impl Host {
    /// Counts one API call of `caller`; a 429 once they are past their rate. This node's
    /// own bucket turns a flood away without a store call; the calls that pass are spent
    /// from the budget every node shares (`People::take_calls`), taken a few at a time.
    pub(super) async fn admit_call(&self, caller: &Caller) -> Result<()> {
        if caller.admin {
            return Ok(());
        }
        let limits = self.config.people;
        let (admitted, taken) = {
            let mut people = self.calls.people.lock();
            let calls = people
                .entry(caller.person.clone())
                .or_insert_with(|| PersonCalls {
                    bucket: TokenBucket::new(f64::from(limits.api_rate), limits.api_burst),
                    taken: 0,
                });
            let admitted = calls.bucket.take(Instant::now());
            let taken = admitted && calls.taken > 0;
            if taken {
                calls.taken -= 1;
            }
            (admitted, taken)
        };
        if taken {
            return Ok(());
        }
        if admitted {
            let want = calls_taken_at_once(limits.api_burst);
            let got = (self.store.people)
                .take_calls(&caller.person, limits.api_rate, limits.api_burst, want)
                .await?;
            if got > 0 {
                if let Some(calls) = self.calls.people.lock().get_mut(&caller.person) {
                    calls.taken += got - 1;
                }
                return Ok(());
            }
        }
        Err(ApiError::new(
            429,
            "rate_limited",
            format!(
                "too many API calls from {}: this host takes {} a second from one person, in \
                 bursts of {}, on all its nodes together (wdeploy host --api-rate, \
                 --api-burst); wait a moment and try again",
                caller.person, limits.api_rate, limits.api_burst
            ),
        )
        .into())
    }

    /// Refuses a new app to a person who already has access to their share.
    pub(super) async fn check_app_budget(&self, by: &Caller) -> Result<()> {
        if by.admin {
            return Ok(());
        }
        let max = self.config.people.max_apps;
        let held = self.apps_of(by).await?.len();
        if held < max {
            return Ok(());
        }
        Err(ApiError::invalid(format!(
            "{} has access to {held} apps, and a person may create apps only while they have \
             access to fewer than {max} on this host (wdeploy host --max-apps-per-person): \
             destroy one, or ask an admin",
            by.person
        ))
        .into())
    }
}
