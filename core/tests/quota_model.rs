//! The quota ledger against a model: random sequences of `charge`,
//! `release`, `set_limit` and `fits` on an [`Account`] and on a plain map
//! from each [`Resource`] to its limit and what is used, following
//! `core/src/quota.rs`:
//!
//! - a charge of `count` fits when used + `count` is at most the limit
//!   (reckoned without overflow); one that does not is refused with
//!   `OverQuota` and changes nothing at all — no resource's use or limit;
//! - a release gives back `count`, never below nothing;
//! - `set_limit` changes only that resource's limit; a limit below what is
//!   held takes nothing away and only refuses new charges;
//! - resources are independent.
//!
//! Counts and limits are mostly small (so that charges meet the limits),
//! now and then near `u32::MAX` (so that sums would overflow).

use proptest::prelude::*;
use tern_core::abi::Error;
use tern_core::quota::{Account, Quota, Resource};

/// The documented ledger: per resource, in code order, (limit, used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Model {
    entries: [(u32, u32); 4],
}

impl Model {
    fn new(quota: Quota) -> Self {
        Model { entries: quota.0.map(|limit| (limit, 0)) }
    }

    fn fits(&self, resource: Resource, count: u32) -> bool {
        let (limit, used) = self.entries[resource as usize];
        u64::from(used) + u64::from(count) <= u64::from(limit)
    }

    fn charge(&mut self, resource: Resource, count: u32) -> Result<(), Error> {
        if !self.fits(resource, count) {
            return Err(Error::OverQuota);
        }
        self.entries[resource as usize].1 += count;
        Ok(())
    }

    fn release(&mut self, resource: Resource, count: u32) {
        let used = &mut self.entries[resource as usize].1;
        *used = used.saturating_sub(count);
    }

    fn set_limit(&mut self, resource: Resource, limit: u32) {
        self.entries[resource as usize].0 = limit;
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Charge(Resource, u32),
    Release(Resource, u32),
    SetLimit(Resource, u32),
    Fits(Resource, u32),
}

fn resource() -> impl Strategy<Value = Resource> {
    prop::sample::select(Resource::ALL.to_vec())
}

/// Mostly small; sometimes anything; sometimes at the top of the range.
fn amount() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0u32..=4,
        2 => 0u32..=16,
        1 => any::<u32>(),
        1 => (0u32..=4).prop_map(|below| u32::MAX - below),
    ]
}

fn limit() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..=12, 1 => any::<u32>(), 1 => Just(u32::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (resource(), amount()).prop_map(|(resource, count)| Op::Charge(resource, count)),
        3 => (resource(), amount()).prop_map(|(resource, count)| Op::Release(resource, count)),
        2 => (resource(), limit()).prop_map(|(resource, limit)| Op::SetLimit(resource, limit)),
        2 => (resource(), amount()).prop_map(|(resource, count)| Op::Fits(resource, count)),
    ]
}

fn quota() -> impl Strategy<Value = Quota> {
    prop_oneof![1 => Just(Quota::DEFAULT), 3 => prop::array::uniform4(limit()).prop_map(Quota)]
}

/// The account says what the model says, for every resource.
fn check(account: &Account, model: &Model) -> Result<(), TestCaseError> {
    for resource in Resource::ALL {
        let (limit, used) = model.entries[resource as usize];
        prop_assert_eq!(account.limit(resource), limit, "limit({:?})", resource);
        prop_assert_eq!(account.used(resource), used, "used({:?})", resource);
        for count in [0, 1, 2, limit.saturating_sub(used), limit.saturating_sub(used).saturating_add(1), u32::MAX] {
            prop_assert_eq!(
                account.fits(resource, count),
                model.fits(resource, count),
                "fits({:?}, {})",
                resource,
                count
            );
        }
    }
    Ok(())
}

fn run(quota: Quota, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut account = Account::new(quota);
    let mut model = Model::new(quota);
    check(&account, &model)?;
    for resource in Resource::ALL {
        prop_assert_eq!(account.used(resource), 0, "a new account holds nothing");
    }
    for &op in ops {
        let before = account;
        match op {
            Op::Charge(resource, count) => {
                let outcome = account.charge(resource, count);
                prop_assert_eq!(outcome, model.charge(resource, count), "charge({:?}, {})", resource, count);
                match outcome {
                    Ok(()) => {
                        prop_assert!(
                            account.used(resource) <= account.limit(resource),
                            "a charge never takes {:?} over its limit",
                            resource
                        );
                        prop_assert_eq!(account.used(resource), before.used(resource) + count);
                    }
                    Err(_) => prop_assert_eq!(account, before, "a refused charge changes nothing"),
                }
            }
            Op::Release(resource, count) => {
                account.release(resource, count);
                model.release(resource, count);
                prop_assert!(account.used(resource) <= before.used(resource), "a release never adds");
            }
            Op::SetLimit(resource, limit) => {
                account.set_limit(resource, limit);
                model.set_limit(resource, limit);
                prop_assert_eq!(account.used(resource), before.used(resource), "a new limit takes nothing away");
            }
            Op::Fits(resource, count) => {
                prop_assert_eq!(account.fits(resource, count), model.fits(resource, count));
                prop_assert_eq!(account, before, "asking changes nothing");
            }
        }
        // Every other resource is untouched.
        let touched = match op {
            Op::Charge(resource, _) | Op::Release(resource, _) | Op::SetLimit(resource, _) | Op::Fits(resource, _) => {
                resource
            }
        };
        for other in Resource::ALL.into_iter().filter(|&other| other != touched) {
            prop_assert_eq!(
                (account.limit(other), account.used(other)),
                (before.limit(other), before.used(other)),
                "{:?} changed by an operation on {:?}",
                other,
                touched
            );
        }
        check(&account, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sequence of charges, releases and new limits: the account
    /// agrees with the model after every step, refusals change nothing,
    /// use never goes below nothing nor over the limit through a charge.
    #[test]
    fn account_matches_model(quota in quota(), ops in prop::collection::vec(op(), 0..64)) {
        run(quota, &ops)?;
    }
}

#[test]
fn resource_codes_round_trip() {
    for (code, resource) in Resource::ALL.into_iter().enumerate() {
        assert_eq!(Resource::from_code(code), Some(resource));
        assert_eq!(resource as usize, code);
    }
    assert_eq!(Resource::from_code(Resource::ALL.len()), None);
    assert_eq!(Resource::from_code(usize::MAX), None);
}
