// Run once by the official mongo image, on the first start with an empty data volume
// (/docker-entrypoint-initdb.d), after it created the root account from
// MONGO_INITDB_ROOT_USERNAME/PASSWORD. Creates the application's own account, limited to
// reading and writing its database: the API and the flows never hold the root password.
// mongosh scripts read the container's environment through process.env.
const database = process.env.MONGO_APP_DB || "mlops";
const user = process.env.MONGO_APP_USER;
const password = process.env.MONGO_APP_PASSWORD;
if (!user || !password) {
  throw new Error("MONGO_APP_USER and MONGO_APP_PASSWORD must be set (see .env.example)");
}
db.getSiblingDB(database).createUser({
  user: user,
  pwd: password,
  roles: [{ role: "readWrite", db: database }],
});
print(`created user '${user}' with readWrite on database '${database}'`);
