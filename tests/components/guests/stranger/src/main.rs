//! `stranger`: a worker importing `wasi:foo/bar@1.0.0`, an interface no wdeploy host
//! provides. A push that would run it must be refused, naming that interface.

mod bindings {
    wit_bindgen::generate!({
        inline: "
            package wasi:foo@1.0.0;

            interface bar {
                ping: func() -> u32;
            }

            world stranger {
                import bar;
            }
        ",
    });
}

fn main() {
    println!("ping: {}", bindings::wasi::foo::bar::ping());
}
