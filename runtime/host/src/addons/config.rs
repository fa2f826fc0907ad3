//! `wasi:config/store`: the app's config vars as of the instance's release (a change of
//! config vars is a new release, so dynos restart with the new values, as with env vars).

use super::AddonView;
use super::bindings::wasi::config::store;

type ConfigResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for AddonView<'_> {
    async fn get(&mut self, key: String) -> ConfigResult<Option<String>> {
        Ok(Ok(self.addons.config.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> ConfigResult<Vec<(String, String)>> {
        Ok(Ok(self
            .addons
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
