//! Probes: what is here now. The code tree ([`git`]), the Python interpreter and packages
//! ([`python`]), the dependency lock files ([`lockfiles`]) and what they ask of the environment
//! ([`depfiles`]), the machine ([`host`]), the input models ([`inputs`]), what a run imports
//! ([`imports`]), the environment of a run as a whole ([`env`](mod@env)), and the one probe of a
//! project's current
//! state at the places a lock names, under one read policy ([`observe`]).

pub mod cache;
pub mod depfiles;
pub mod env;
pub mod git;
pub mod host;
pub mod imports;
pub mod index;
pub mod inputs;
pub mod lockfiles;
pub mod observe;
pub mod pyenv;
pub mod python;
