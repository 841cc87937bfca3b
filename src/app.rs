//! `App`: the cheap-to-clone handle every request handler gets.

use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub config: Arc<Config>,
}

impl App {
    pub fn new(store: Store, config: Config) -> App {
        App {
            store,
            config: Arc::new(config),
        }
    }
}
