//! Hosts: where sessions run. Drivers report them (this machine, the config's sidecars, or
//! a `host-driver` component); the registry tracks their state, capacity and allocation;
//! placement picks one per session.

mod connector;
pub mod driver;
mod local_driver;
pub mod model;
pub mod placement;
mod plugin_driver;
pub mod registry;
mod static_driver;

pub use connector::{SidecarConnector, SidecarCredentials};
pub use driver::{DriverError, DriverInfo, HostDriver, ProvisionRequest};
pub use local_driver::{LOCAL, LocalDriver};
pub use model::{Demand, HostReport, Overcommit, PlacementHints, Resources};
pub use plugin_driver::{PluginDriver, PluginDriverSettings};
pub use registry::{
    Connector, DriverSlot, HOSTS_STREAM, HostView, NoCapacity, Placed, Registry, RegistryConfig,
    RegistryFigures, Scaling,
};
pub use static_driver::StaticDriver;
