//! A router that remembers its routes: each listener's routes are built through [`Routes`],
//! so [`all`] lists every (method, path) a node serves, and the security tests walk every one
//! of them (a new route cannot be left out of them).

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, any, delete, get, post, put};

/// A method a route takes; `Any` for a route that takes every method (a WebSocket at `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteMethod {
    Get,
    Post,
    Put,
    Delete,
    Any,
}

/// One route of a listener.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: RouteMethod,
    /// With axum's `{param}` placeholders.
    pub path: String,
}

/// A [`Router`] and the list of its routes.
pub struct Routes<S> {
    router: Router<S>,
    list: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn add(mut self, method: RouteMethod, path: &str, mr: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, mr);
        self.list.push(Route {
            method,
            path: path.to_string(),
        });
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add(RouteMethod::Get, path, get(h))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add(RouteMethod::Post, path, post(h))
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add(RouteMethod::Put, path, put(h))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add(RouteMethod::Delete, path, delete(h))
    }

    pub fn any<H: Handler<T, S>, T: 'static>(self, path: &str, h: H) -> Self {
        self.add(RouteMethod::Any, path, any(h))
    }

    /// Both routers' routes.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self
    }

    pub fn list(&self) -> &[Route] {
        &self.list
    }

    pub fn into_router(self) -> Router<S> {
        self.router
    }
}

/// Every route of every listener a node can serve, by listener name (`API`, `peer`, `mv`,
/// `Altair beer-tap`, `TestbedOS`, `funkytown reporter`).
pub fn all() -> Vec<(&'static str, Vec<Route>)> {
    let doc = crate::api::openapi();
    let mut api: Vec<Route> = doc["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .flat_map(|(path, item)| {
            [
                (RouteMethod::Get, "get"),
                (RouteMethod::Post, "post"),
                (RouteMethod::Put, "put"),
                (RouteMethod::Delete, "delete"),
            ]
            .into_iter()
            .filter(|(_, m)| item.get(*m).is_some())
            .map(|(method, _)| Route {
                method,
                path: path.clone(),
            })
        })
        .collect();
    api.extend(crate::api::extra_routes("".into()).list().iter().cloned());
    // The document also lists the Altair, dashboard and document routes.
    api.sort();
    api.dedup();
    vec![
        ("API", api),
        ("peer", crate::network::routes().list().to_vec()),
        (
            "mv",
            crate::faces::mv::own_routes("".into()).list().to_vec(),
        ),
        (
            "Altair beer-tap",
            crate::faces::altair::own_routes().list().to_vec(),
        ),
        (
            "TestbedOS",
            crate::faces::testbed::own_routes().list().to_vec(),
        ),
        (
            "funkytown reporter",
            crate::faces::funkytown::own_routes().list().to_vec(),
        ),
    ]
}
