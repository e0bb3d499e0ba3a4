console.log("cohesix");
