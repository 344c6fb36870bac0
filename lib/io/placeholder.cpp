namespace oscar::io {}
