# Runs `npm run build` for the dashboard with the npm packages already installed (no network).
#   cmake -DNPM=... -DNODE=... -DDASHBOARD_DIR=... -DOUT_DIR=... -P build_dashboard.cmake
if(NOT NODE OR NOT NPM)
  message(FATAL_ERROR "logp dashboard: node and npm are needed to build it (Debian: apt-get "
    "install nodejs npm, or run scripts/install-deps.sh)")
endif()
if(NOT EXISTS "${DASHBOARD_DIR}/node_modules/.logp-installed-lock.json")
  message(FATAL_ERROR "logp dashboard: ${DASHBOARD_DIR}/node_modules is missing (or was not "
    "installed by npm ci); run scripts/install-deps.sh")
endif()
file(READ "${DASHBOARD_DIR}/package-lock.json" want)
file(READ "${DASHBOARD_DIR}/node_modules/.logp-installed-lock.json" have)
if(NOT want STREQUAL have)
  message(FATAL_ERROR "logp dashboard: ${DASHBOARD_DIR}/node_modules does not hold the packages "
    "of its package-lock.json; run scripts/install-deps.sh")
endif()
file(REMOVE_RECURSE "${OUT_DIR}")
execute_process(COMMAND "${NPM}" run --silent build -- "--outdir=${OUT_DIR}"
  WORKING_DIRECTORY "${DASHBOARD_DIR}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "logp dashboard: npm run build failed (${result})")
endif()
