const pkg = require('./package.json');
console.log(`node ${pkg.name} ${pkg.version} as uid ${process.getuid()}`);
