//! Policy decisions. The sandbox asks a [`Gate`] before every capability use;
//! the Cedar-backed gate plugs in behind the same trait.

mod gate;

pub use gate::{
    AllowAll, CapabilityRequest, ConnectRequest, Decision, DecisionRecord, Gate, HostAllowList,
};
