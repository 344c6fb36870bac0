namespace oscar::calib {}
