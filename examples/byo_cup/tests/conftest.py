pytest_plugins = ["jingtan_api.plugins.testing"]
