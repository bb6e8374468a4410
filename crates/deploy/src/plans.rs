//! Plan policy (`[plans.*]`): which plan a user is on and what it allows. Rules only: the
//! caller reads counts and times from the store and maps a [`PlanRefusal`] to its protocol
//! (the deploy API answers 403, 413 or 429).

use std::collections::BTreeMap;
use valet_config::PlanConfig;

/// Largest upload when no plan sets `max_upload` (and for the admin).
pub const DEFAULT_MAX_UPLOAD: u64 = 100 * 1024 * 1024;
/// The window of `deploys_per_hour`, in seconds.
const RATE_WINDOW: i64 = 3600;

/// Why a plan refuses a deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefusal {
    #[error(
        "your plan {name:?} is not configured on this server (plans: {known}); ask its operator"
    )]
    UnknownPlan { name: String, known: String },
    #[error("the upload is {size} bytes; plan {plan:?} allows max_upload = {max} bytes")]
    TooLarge { plan: String, size: u64, max: u64 },
    #[error("plan {plan:?} allows max_projects = {max}; you have {count}: delete one first")]
    TooManyProjects { plan: String, max: u32, count: i64 },
    #[error("plan {plan:?} allows deploys_per_hour = {limit}; you made {made} in the last hour: try again in {retry_after} s")]
    TooManyDeploys {
        plan: String,
        limit: u32,
        made: usize,
        /// Seconds until one more deploy fits.
        retry_after: u64,
    },
}

/// Every configured plan.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    plans: BTreeMap<String, PlanConfig>,
}

/// One user's plan.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub name: &'a str,
    pub config: &'a PlanConfig,
}

impl Plans {
    pub fn new(plans: BTreeMap<String, PlanConfig>) -> Self {
        Self { plans }
    }

    /// The largest body an upload endpoint reads: the largest plan limit, else the default.
    pub fn body_limit(&self) -> u64 {
        self.plans
            .values()
            .map(|p| p.max_upload.get())
            .filter(|&n| n > 0)
            .max()
            .unwrap_or(DEFAULT_MAX_UPLOAD)
            .max(DEFAULT_MAX_UPLOAD)
    }

    /// The plan of a user whose token or JWT names `plan`; a user without one gets the first
    /// plan, and with no `[plans]` at all nobody has limits. A plan name that is not
    /// configured (a token made for a plan since removed, a JWT from an issuer that knows
    /// other plans) is refused rather than let through without limits. Admins have no plan:
    /// the caller does not ask for theirs.
    pub fn of_user(&self, plan: Option<&str>) -> Result<Option<Plan<'_>>, PlanRefusal> {
        let found = match plan {
            Some(name) if !self.plans.is_empty() => Some(
                self.plans
                    .get_key_value(name)
                    .ok_or_else(|| PlanRefusal::UnknownPlan {
                        name: name.to_string(),
                        known: self.plans.keys().cloned().collect::<Vec<_>>().join(", "),
                    })?,
            ),
            _ => self.plans.iter().next(),
        };
        Ok(found.map(|(name, config)| Plan { name, config }))
    }
}

impl Plan<'_> {
    /// `max_upload` (0: no limit of the plan's own).
    pub fn check_upload(&self, size: u64) -> Result<(), PlanRefusal> {
        let max = self.config.max_upload.get();
        if max > 0 && size > max {
            return Err(PlanRefusal::TooLarge {
                plan: self.name.to_string(),
                size,
                max,
            });
        }
        Ok(())
    }

    /// `max_projects`, for a new project when the user has `count` already.
    pub fn check_new_project(&self, count: i64) -> Result<(), PlanRefusal> {
        if count >= i64::from(self.config.max_projects) {
            return Err(PlanRefusal::TooManyProjects {
                plan: self.name.to_string(),
                max: self.config.max_projects,
                count,
            });
        }
        Ok(())
    }

    /// The start of the window `deploys_per_hour` counts over, for the caller's store read.
    pub fn rate_window_start(now: i64) -> i64 {
        now - RATE_WINDOW
    }

    /// `deploys_per_hour`, given the user's deploys since [`Self::rate_window_start`], oldest
    /// first. Two uploads racing past it may both run; the next one sees them.
    pub fn check_deploy_rate(&self, times: &[i64], now: i64) -> Result<(), PlanRefusal> {
        let limit = self.config.deploys_per_hour;
        if limit == 0 {
            return Ok(());
        }
        match retry_after(times, limit, now) {
            None => Ok(()),
            Some(retry_after) => Err(PlanRefusal::TooManyDeploys {
                plan: self.name.to_string(),
                limit,
                made: times.len(),
                retry_after,
            }),
        }
    }
}

/// Seconds until one more deploy fits under `limit`, or `None` when it fits now. `times` are
/// the deploys inside the window, oldest first; the one that must leave the window is the
/// oldest when there are exactly `limit`, a later one when the plan was lowered since.
fn retry_after(times: &[i64], limit: u32, now: i64) -> Option<u64> {
    let limit = limit as usize;
    if times.len() < limit {
        return None;
    }
    let leaving = times[times.len() - limit];
    Some((leaving + RATE_WINDOW - now).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_limit_a_deploy_passes() {
        assert_eq!(retry_after(&[], 2, 10_000), None);
        assert_eq!(retry_after(&[9_000], 2, 10_000), None);
    }

    #[test]
    fn at_the_limit_the_wait_is_until_the_oldest_leaves_the_hour() {
        // Deploys 1000 s and 200 s ago: the first leaves the window in 2600 s.
        assert_eq!(retry_after(&[9_000, 9_800], 2, 10_000), Some(2_600));
        // A deploy at the window's very edge still asks for a second, never 0.
        assert_eq!(retry_after(&[6_400, 9_800], 2, 10_000), Some(1));
    }

    #[test]
    fn over_a_lowered_limit_the_wait_is_until_enough_have_left() {
        // Three in the window, limit 2: two must leave before one fits, so wait for the second.
        assert_eq!(retry_after(&[7_000, 8_000, 9_000], 2, 10_000), Some(1_600));
        assert_eq!(retry_after(&[7_000, 8_000, 9_000], 1, 10_000), Some(2_600));
    }

    #[test]
    fn a_user_gets_the_named_plan_the_first_one_or_a_refusal() {
        let plans = Plans::new(
            [
                ("free".to_string(), PlanConfig::default()),
                ("pro".to_string(), PlanConfig::default()),
            ]
            .into(),
        );
        assert_eq!(plans.of_user(None).unwrap().unwrap().name, "free");
        assert_eq!(plans.of_user(Some("pro")).unwrap().unwrap().name, "pro");
        assert!(matches!(
            plans.of_user(Some("gold")),
            Err(PlanRefusal::UnknownPlan { .. })
        ));
        assert!(Plans::default().of_user(Some("gold")).unwrap().is_none());
    }
}
