//! Removing a person, the same on both backends: their tokens stop working, their access
//! to every app goes, others keep theirs, and a person added again under the same email
//! starts with nothing of it.

use chrono::Utc;
use wdeploy_core::{Digest, Person, TokenId};
use wdeploy_store::cluster::testing::NatsServer;
use wdeploy_store::cluster::{ClusterPeople, Nats};
use wdeploy_store::{AppId, People, RemovedUser, StoreError, TokenRecord};

fn token(user: &Person, secret: &[u8], id: u8) -> TokenRecord {
    TokenRecord {
        id: TokenId::from_random(&[id, 2, 3, 4, 5, 6]),
        hash: Digest::of_bytes(secret),
        user: user.clone(),
        description: String::new(),
        created_at: Utc::now(),
    }
}

async fn removing_a_person(people: &dyn People) {
    let (bob, ann): (Person, Person) = ("bob@x.io".parse().unwrap(), "ann@x.io".parse().unwrap());
    let (shop, blog) = (AppId::random(), AppId::random());
    people.add_user(&bob, false).await.unwrap();
    people.add_user(&ann, false).await.unwrap();
    for (t, user) in [(1, &bob), (2, &bob), (3, &ann)] {
        let secret = format!("token {t}");
        people
            .add_token(&token(user, secret.as_bytes(), t))
            .await
            .unwrap();
    }
    people.grant(&shop, &bob).await.unwrap();
    people.grant(&blog, &bob).await.unwrap();
    people.grant(&shop, &ann).await.unwrap();

    let mut removed = people.remove_user(&bob).await.unwrap();
    removed.apps.sort();
    let mut apps = vec![shop.clone(), blog.clone()];
    apps.sort();
    assert_eq!(removed, RemovedUser { tokens: 2, apps });
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 1")).await.unwrap(),
        None
    );
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 2")).await.unwrap(),
        None
    );
    assert!(people.user(&bob).await.unwrap().is_none());
    assert!(!people.may_act_on(&shop, &bob).await.unwrap());
    assert!(people.apps_of(&bob).await.unwrap().is_empty());
    // Ann keeps all she had.
    assert!(
        people
            .token(&Digest::of_bytes(b"token 3"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        people.collaborators(&shop).await.unwrap(),
        vec![ann.clone()]
    );
    assert!(matches!(
        people.remove_user(&bob).await,
        Err(StoreError::NotFound(_))
    ));
    // Added again, bob starts afresh.
    people.add_user(&bob, false).await.unwrap();
    assert!(people.apps_of(&bob).await.unwrap().is_empty());
    assert_eq!(
        people.token(&Digest::of_bytes(b"token 1")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn embedded() {
    let data = tempfile::tempdir().unwrap();
    let me = wdeploy_store::NodeInfo {
        name: "solo".parse().unwrap(),
        advertise: String::new(),
        started_at: Utc::now(),
        version: String::new(),
        leaving: false,
    };
    let store = wdeploy_store::embedded::open(data.path(), me).unwrap();
    removing_a_person(store.people.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let server = NatsServer::start().unwrap();
    let nats = Nats::connect(&server.url(), &"node-a".parse().unwrap())
        .await
        .unwrap();
    let people = ClusterPeople::open(&nats).await.unwrap();
    removing_a_person(&people).await;
}
