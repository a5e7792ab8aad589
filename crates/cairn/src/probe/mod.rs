//! Probes: what is here now. The code tree ([`git`]), the Python interpreter and packages
//! ([`python`]), the dependency lock files ([`lockfiles`]), the machine ([`host`]), the input
//! models ([`inputs`]) and the environment of a run as a whole ([`env`](mod@env)).

pub mod env;
pub mod git;
pub mod host;
pub mod inputs;
pub mod lockfiles;
pub mod python;
